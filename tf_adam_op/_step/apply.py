"""The op layer: one update, or one group's multi-tensor update, from handles and StepScalars.

Both optimizer families call these with values (handles, gradients, a StepScalars): which variables
go to which op, and with which scalars, is decided above; how an op's inputs are assembled is
written here once.
"""

import dataclasses

import tensorflow as tf

from tf_adam_op import ops


def _variant(scalars, decays, vhat_name, vhat):
  options = scalars.options(decays)
  if vhat is not None:
    options[vhat_name] = vhat
  return options


def dense(var, m, v, scalars, grad, *, vhat=None, decays=False, use_locking=False, ref=False):
  """One variable's dense update: ResourceApplyAdamV1 on handles, ApplyAdamV1 on ref variables."""
  op = ops.apply_adam_v1 if ref else ops.resource_apply_adam_v1
  return op(var, m, v, *scalars.inputs(), grad, use_locking=use_locking,
            **_variant(scalars, decays, "vhat", vhat))


def sparse(var, m, v, scalars, values, indices, *, vhat=None, decays=False, ref=False,
           **sparse_options):
  """One variable's IndexedSlices update ((Resource)SparseApplyAdamV1); `sparse_options` are the
  op's rule options (lazy, dense_rule, v_term, scale_first, use_locking)."""
  op = ops.sparse_apply_adam_v1 if ref else ops.resource_sparse_apply_adam_v1
  return op(var, m, v, *scalars.inputs(), values, indices, **sparse_options,
            **_variant(scalars, decays, "vhat", vhat))


def group(handles, scalars, grads, *, decays, use_locking=False):
  """A group's update with packed handle vectors (vars, ms, vs[, vhats]); the beta powers are
  given as values (ResourceApplyAdamV1MultiNoAdvance)."""
  var_handles, m_handles, v_handles, *vhats = handles
  return ops.resource_apply_adam_v1_multi_no_advance(
      var_handles, m_handles, v_handles, *scalars.inputs(), grads, use_locking=use_locking,
      **_variant(scalars, decays, "vhats", vhats[0] if vhats else None))


def group_advancing(handles, powers, scalars, grads, *, decays, use_locking=False):
  """A group's update that reads and advances the beta power accumulators `powers` itself
  (ResourceApplyAdamV1Multi): a step's only group, on the powers' device."""
  var_handles, m_handles, v_handles, *vhats = handles
  return ops.resource_apply_adam_v1_multi(
      var_handles, m_handles, v_handles, *(p.handle for p in powers), *scalars.hyperparameters(),
      grads, use_locking=use_locking, power_dtype=powers[0].dtype.base_dtype,
      **_variant(scalars, decays, "vhats", vhats[0] if vhats else None))


def group_unpacked(handle_lists, scalars, grads, *, decays, use_locking=False):
  """A group's update with the handles as lists (ResourceApplyAdamV1MultiUnpacked): under XLA,
  which reads no vector of handles."""
  var_handles, m_handles, v_handles, *vhats = handle_lists
  return ops.resource_apply_adam_v1_multi_unpacked(
      var_handles, m_handles, v_handles, *scalars.inputs(), grads, use_locking=use_locking,
      **_variant(scalars, decays, "vhats", vhats[0] if vhats else None))


def _8bit_variant(scalars, decays, vhat_states):
  options = scalars.options(decays)
  if vhat_states is not None:
    options["vhat_states"] = vhat_states
  return options


def after_check(scalars, *checks):
  """The scalars with lr * check for each of `checks`, a step's checks under XLA
  (checks.xla_scale_check, checks.xla_index_check: each a 1.0, in lr's dtype here): the same lr,
  exactly, and an input the update cannot run before the checks. Under XLA every update the rest
  of the step does not already wait for by data takes them (the 8-bit ones, single dense and
  sparse ones). A check None is left out; none: the scalars as given."""
  checks = [check for check in checks if check is not None]
  if not checks:
    return scalars
  return dataclasses.replace(scalars, lr=times_checks(scalars.lr, checks))


def times_checks(value, checks):
  """value * check for each of `checks` (each a float32 1.0, cast to value's dtype): the same
  number, exactly, computed only once the checks ran (XLA orders by data only)."""
  value = tf.convert_to_tensor(value)
  for check in checks:
    value = value * tf.cast(check, value.dtype)
  return value


def dense_8bit(var, m_states, v_states, scalars, grad, *, vhat_states=None, decays=False,
               use_locking=False):
  """One variable's dense update with 8-bit states (ResourceApplyAdam8bit): m_states, v_states
  (and vhat_states) are (codes, absmax) handle pairs."""
  return ops.resource_apply_adam_8bit(var, m_states, v_states, *scalars.inputs(), grad,
                                      use_locking=use_locking,
                                      **_8bit_variant(scalars, decays, vhat_states))


def sparse_8bit(var, m_states, v_states, scalars, values, indices, *, vhat_states=None,
                decays=False, use_locking=False, lazy=False, dense_rule=False):
  """One variable's IndexedSlices update with 8-bit states (ResourceSparseApplyAdam8bit)."""
  return ops.resource_sparse_apply_adam_8bit(
      var, m_states, v_states, *scalars.inputs(), values, indices, use_locking=use_locking,
      lazy=lazy, dense_rule=dense_rule, **_8bit_variant(scalars, decays, vhat_states))


def group_8bit(handle_lists, scalars, grads, *, decays, use_locking=False, variable_names=(),
               unpacked=False):
  """A group's update with 8-bit states (ResourceApplyAdam8bitMulti): handle_lists are the handle
  vectors (or lists) of vars, m codes, m scales, v codes, v scales (and vhat's two);
  variable_names what the op's errors call the variables (a corrupt state, say). `unpacked`:
  lists passed as N inputs each (ResourceApplyAdam8bitMultiUnpacked), the form XLA compiles."""
  var_handles, m_codes, m_absmax, v_codes, v_absmax, *vhat = handle_lists
  op = (ops.resource_apply_adam_8bit_multi_unpacked if unpacked
        else ops.resource_apply_adam_8bit_multi)
  return op(var_handles, (m_codes, m_absmax), (v_codes, v_absmax), *scalars.inputs(), grads,
            use_locking=use_locking, variable_names=variable_names,
            **_8bit_variant(scalars, decays, (vhat[0], vhat[1]) if vhat else None))
