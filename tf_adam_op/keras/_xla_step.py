"""Keras steps under XLA: with the ops' XLA kernels (one custom call per op, ordered by data), and
without them (Keras's own update_step where it is the rule, the shared composite for the rest).

Without the kernels: for float32/float64 variables without `lazy` Keras's own update_step is the
fused ops' rule, op for op, so it runs as it is (Keras's XLA numbers). What Keras has no rule for
is the composite (_step/composite.py): float16/bfloat16 variables computed in float32 and rounded
once (their weight decay in the same pass, as the op does it), and lazy IndexedSlices rows.
"""

import tensorflow as tf

from tf_adam_op._step import apply
from tf_adam_op._step import composite
from tf_adam_op._step import grouping
from tf_adam_op._step import xla
from tf_adam_op.keras import _inputs
from tf_adam_op.keras import _plan


def keras_rule_applies(lazy, grad, var):
  """Whether Keras's own update_step computes what the fused ops would for (grad, var)."""
  lazy_rows = lazy and isinstance(grad, tf.IndexedSlices)
  return var.dtype.base_dtype in (tf.float32, tf.float64) and not lazy_rows


def composite_update(var, slots, grad, scalars, decays, lazy):
  """One variable's update as the fused op computes it, from XLA-compilable ops; `slots` are its
  m, v and vhat (None without AMSGrad) tf.Variables."""
  m, v, vhat = slots
  dtype = var.dtype.base_dtype
  if isinstance(grad, tf.IndexedSlices):
    values = tf.cast(grad.values, dtype)  # Keras casts the gradient to the variable's dtype
    if lazy:
      return composite.dense_rows_update(var, m, v, vhat, values, grad.indices, scalars, decays)
    # 16 bits, Keras's rule: densified, the squares summed apart
    shape = tf.shape(var, out_type=grad.indices.dtype)
    dense = tf.convert_to_tensor(tf.IndexedSlices(values, grad.indices, shape))
    squares = tf.convert_to_tensor(tf.IndexedSlices(tf.square(values), grad.indices, shape))
    return composite.dense_update(var, m, v, vhat, dense, scalars, decays, g_squared=squares)
  return composite.dense_update(var, m, v, vhat, tf.cast(grad, dtype), scalars, decays)


def fused_step(step, grads, trainable_variables, learning_rate):
  """Under XLA with the ops' XLA kernels: a round's updates, each group's handles as lists
  (ResourceApplyAdamV1MultiUnpacked, with 8-bit states ResourceApplyAdam8bitMultiUnpacked; XLA
  reads no vector of handles). `step` is the optimizer's _KerasStep (what each variable needs).

  XLA orders by data only: the dense groups' gradients, 8-bit ones included (and those of the
  variables Keras's own update_step updates, sparse or not), depend on what the sparse ops wrote,
  and `iterations` (which Keras advances after this returns) on everything, so a sparse op that
  fails while it runs (an index out of range) stops the step before the rest is written
  (xla.after_updates). Every update takes the step's checks (step.checked_scalars: its 8-bit
  scales, the indices of all its sparse gradients, in every round; Keras's own updates through
  their gradients, step.checks), so a bad index in a later round stops an earlier round's updates
  too."""
  dense, dense_8bit, keras_rule, first_updates = [], [], [], []
  for i, (grad, keras_var) in enumerate(zip(grads, trainable_variables)):
    var = step.tf_variable(keras_var)
    step.check_dtype(var)
    if step.keras_computes(var):
      keras_rule.append(i)
    elif isinstance(grad, tf.IndexedSlices):
      first_updates.append(step.update_one(grad, keras_var, learning_rate))
    elif step.has_8bit_states(var):
      xla.check_8bit_usable(var, "tf_adam_op.keras")
      dense_8bit.append(((i, keras_var), var))
    else:
      dense.append(((i, keras_var), var))
  after_sparse = xla.after_updates(first_updates)
  grads = list(grads)
  positions = [i for (i, _), _ in dense + dense_8bit]
  for i, grad in zip(positions, after_sparse(*[grads[i] for i in positions])):
    grads[i] = grad
  for i in keras_rule:  # (their gradients wait for the sparse ops too)
    grads[i] = after_checks(_map_values(grads[i], lambda values: after_sparse(values)[0]),
                            step.checks())
    step.keras_update(grads[i], trainable_variables[i], learning_rate)
  decays = {id(var): step.decays(var) for _, var in dense}
  updates = list(first_updates) + _8bit_group_updates(step, dense_8bit, grads, learning_rate)
  for group in grouping.group_updates(dense, lambda var: decays[id(var)]):
    keras_vars = [keras_var for _, keras_var in group.items]
    handle_lists = [[v.handle for v in variables]
                    for variables in [group.variables] + _plan.slot_lists(step.slots, keras_vars)]
    with tf.device(group.device):
      updates.append(apply.group_unpacked(
          handle_lists, step.checked_scalars(group.dtype, learning_rate, group.decays),
          [_inputs.as_dtype(grads[i], group.dtype) for i, _ in group.items],
          decays=group.decays))
  step.iterations.assign_add(xla.after_updates(updates)(zero_like(step.iterations))[0])


def zero_like(iterations):
  """A zero of iterations' dtype: what `iterations` is advanced by after the updates (an
  assign_add whose increment comes through xla.after_updates), so that Keras's own advance, which
  reads it, waits for them. Not its value through the conditional: XLA then copies the variable's
  donated buffer first, and may place the step's temporaries in it before a check fails (found:
  `iterations` holding float bits after a refused step)."""
  return tf.zeros([], iterations.dtype)


def after_checks(grad, checks):
  """A gradient Keras's own update_step takes under XLA, computed after the step's `checks`
  (xla.after_values; an IndexedSlices' values): Keras writes m and v from the gradient alone, not
  the learning rate the fused updates take the checks through."""
  after = xla.after_values(checks)
  return _map_values(grad, lambda values: after(values)[0])


def _map_values(grad, fn):
  """fn(grad), or for an IndexedSlices gradient the same rows with fn(values)."""
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(fn(grad.values), grad.indices, grad.dense_shape)
  return fn(grad)


def _8bit_group_updates(step, dense_8bit, grads, learning_rate):
  """One ResourceApplyAdam8bitMultiUnpacked per (device, dtype, decays) group of the variables
  with 8-bit states and dense gradients ((position, Keras variable), tf.Variable pairs), each
  after the step's scale check (step.checked_scalars)."""
  decays = {id(var): step.decays(var) for _, var in dense_8bit}
  updates = []
  for group in grouping.group_updates(dense_8bit, lambda var: decays[id(var)]):
    keras_vars = [keras_var for _, keras_var in group.items]
    handle_lists = [[v.handle for v in variables] for variables in
                    [group.variables, *_plan.state_8bit_lists(step.states_8bit, keras_vars)]]
    with tf.device(group.device):
      updates.append(apply.group_8bit(
          handle_lists, step.checked_scalars(group.dtype, learning_rate, group.decays),
          [_inputs.as_dtype(grads[i], group.dtype) for i, _ in group.items],
          decays=group.decays, variable_names=_plan.op_error_names(keras_vars),
          unpacked=True))
  return updates
