"""Steps under XLA (tf.function(jit_compile=True), Keras's jit_compile): which path, and the composite.

Where the XLA kernels are loaded (_loader.xla_kernels: TF 2.21 builds) and the variables are on the
CPU (or on a GPU, in a build with the CUDA kernels), the optimizers use the ops themselves under
XLA: each compiles to one custom call into the fused loop (cc/xla), the multi-tensor update as
ResourceApplyAdamV1MultiUnpacked, so a step gives the bits it gives outside XLA. Otherwise (no XLA
kernels, a GPU without CUDA kernels, or TF_ADAM_OP_XLA_KERNELS=0 in the environment) the step is
the composite below, chosen explicitly by kernels_usable.

The composite: when the optimizer builds its step inside an XLA context without the kernels it
emits what stock AdamOptimizer emits there: stock's ResourceApplyAdam (which has an XLA kernel) for
dense float32/float64 updates, and stock's scatter-based composition for sparse ones, so results
agree with stock under XLA. What stock does not have is composed from TF ops in the same order as
the C++ rule: dense half/bfloat16 (computed in float32, rounded once), lazy sparse updates, AMSGrad
and the weight decay (stock's ApplyAdamWithAmsgrad has no XLA kernel).
"""

import os

import tensorflow as tf
from tensorflow.python.ops import control_flow_util
from tensorflow.python.ops import gen_resource_variable_ops
from tensorflow.python.ops import gen_training_ops
from tensorflow.python.training import optimizer as optimizer_lib

from tf_adam_op import _loader
from tf_adam_op import ops

# Set to 0 to make every XLA step take the composite path (e.g. to get stock's XLA numbers).
KERNELS_ENVIRONMENT_VARIABLE = "TF_ADAM_OP_XLA_KERNELS"


def in_xla_context():
  """Whether ops built now will be compiled by XLA (e.g. inside tf.function(jit_compile=True))."""
  return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def kernels_enabled():
  """Whether XLA steps may use the ops' XLA kernels: loaded, and not turned off by the variable."""
  if os.environ.get(KERNELS_ENVIRONMENT_VARIABLE, "1").strip().lower() in ("0", "false", "no"):
    return False
  return _loader.xla_kernels()[0]


def describe():
  """One line for `tf-adam-op info`: which path XLA steps take in this process, and why."""
  loaded, why = _loader.xla_kernels()
  if not loaded:
    return f"XLA kernels: {why}; XLA steps use the composite path"
  if not kernels_enabled():
    return (f"XLA kernels: loaded, turned off by {KERNELS_ENVIRONMENT_VARIABLE}=0; XLA steps use "
            "the composite path")
  from tf_adam_op import _build_info  # pylint: disable=g-import-not-at-top
  gpu = ("GPU custom calls built, not yet run on a GPU" if _build_info.CUDA_KERNELS_BUILT
         else "no GPU custom calls: GPU variables take the composite path")
  return f"XLA kernels: loaded (CPU custom calls; {gpu}); XLA steps run the fused ops"


def _has_handler(var):
  """Whether the custom calls have a handler where `var` is: the CPU, or a GPU when the CUDA kernels
  are built (their XLA handlers are compiled with them)."""
  device = getattr(var, "device", None) or ""
  device_type = tf.DeviceSpec.from_string(device).device_type
  if device_type in (None, "CPU"):
    return True
  from tf_adam_op import _build_info  # pylint: disable=g-import-not-at-top
  return device_type == "GPU" and _build_info.CUDA_KERNELS_BUILT


def kernels_usable(variables):
  """Whether an XLA step of these variables uses the ops (their XLA kernels) rather than the
  composite."""
  return kernels_enabled() and all(_has_handler(var) for var in variables)


def after_updates(update_ops):
  """A function returning its tensors unchanged, but computed after every one of `update_ops` has
  run under XLA: a conditional whose predicate reads a value each op wrote (its first variable,
  read after it) and is always true, returning the tensors unchanged.

  Why: tf2xla drops control dependencies between ops, XLA orders only by data, and an optimization
  barrier does not help (XLA's CPU runtime orders by buffers, not by the control edges the barrier
  becomes). A step whose update fails while it runs (a sparse index out of range, found by the
  handler) stops the executable at that custom call; without a data dependency the beta powers'
  advance might already have run, and the failed step would leave them advanced. The predicate is
  a value read, not arithmetic on it, so the tensors pass exactly whatever the variables hold.
  """
  written = []
  for op in update_ops:
    op = getattr(op, "op", op)
    if op.inputs and op.inputs[0].dtype == tf.resource and "T" in op.node_def.attr:
      value = gen_resource_variable_ops.read_variable_op(op.inputs[0], op.get_attr("T"))
      written.append(tf.reshape(value, [-1])[:1])  # empty for an empty variable

  def after(*tensors):
    if not written:
      return tensors
    # Always true (every number is finite, infinite or NaN), but not before the ops ran: XLA
    # cannot fold it. The branches differ, so XLA cannot merge them and drop the predicate (with
    # the same identity in both it may, and then order the rest before a failing op: found by an
    # outside check with Keras's EMA in the step); the false one is never taken.
    first = tf.concat([tf.cast(w, tf.float32) for w in written], 0)
    predicate = tf.reduce_all(tf.math.is_finite(first) | tf.math.is_inf(first)
                              | tf.math.is_nan(first))
    same = lambda: [tf.identity(t) for t in tensors]
    never = lambda: [tf.zeros_like(t) for t in tensors]
    return tuple(tf.cond(predicate, same, never))
  return after


def _alpha(lr, beta1_power, beta2_power):
  return lr * tf.sqrt(1 - beta2_power) / (1 - beta1_power)


def _decayed(opt, var, var_c, dtype):
  """var_c after AdamWOptimizer's decay, var -= weight_decay * var, when `var` decays."""
  if not opt._decays(var):  # pylint: disable=protected-access
    return var_c
  return var_c - tf.cast(opt._weight_decay_input(dtype), var_c.dtype) * var_c  # pylint: disable=protected-access


def _second_moment(opt, var, v_c, rows=None):
  """v_c, or with AMSGrad max(vhat, v_c) and the vhat assignment (of `rows` only, when given)."""
  if not opt._amsgrad:  # pylint: disable=protected-access
    return v_c, []
  vhat = opt.get_slot(var, "vhat")
  old = tf.gather(vhat, rows) if rows is not None else vhat.read_value()
  vhat_c = tf.maximum(tf.cast(old, v_c.dtype), v_c)
  stored = tf.cast(vhat_c, vhat.dtype.base_dtype)
  assign = (vhat.scatter_update(tf.IndexedSlices(stored, rows)) if rows is not None
            else vhat.assign(stored))
  return vhat_c, [assign]


def dense_update(opt, grad, var):
  """One dense step of resource variable `var` (stock's op; a composition for 16 bits, AMSGrad and
  the weight decay)."""
  m, v = opt.get_slot(var, "m"), opt.get_slot(var, "v")
  dtype = var.dtype.base_dtype
  beta1_power, beta2_power = opt._get_beta_accumulators()  # pylint: disable=protected-access
  plain = not opt._amsgrad and not opt._decays(var)  # pylint: disable=protected-access
  if plain and dtype in (tf.float32, tf.float64):
    scalars = [tf.cast(x, dtype) for x in (beta1_power, beta2_power, opt._lr_t, opt._beta1_t,  # pylint: disable=protected-access
                                          opt._beta2_t, opt._epsilon_t)]  # pylint: disable=protected-access
    return gen_training_ops.resource_apply_adam(var.handle, m.handle, v.handle, *scalars, grad,
                                                use_locking=opt._use_locking)  # pylint: disable=protected-access
  # The C++ rule in the compute dtype (float32 for 16 bits), rounded once on store.
  c = lambda x: tf.cast(x, ops.compute_dtype(dtype))
  beta1, beta2, epsilon = c(opt._beta1_t), c(opt._beta2_t), c(opt._epsilon_t)  # pylint: disable=protected-access
  alpha = _alpha(c(opt._lr_t), c(beta1_power), c(beta2_power))  # pylint: disable=protected-access
  g, m_c, v_c = c(grad), c(m), c(v)
  m_c = m_c + (g - m_c) * (1 - beta1)
  v_c = v_c + (g * g - v_c) * (1 - beta2)
  second, vhat_assign = _second_moment(opt, var, v_c)
  var_c = _decayed(opt, var, c(var), dtype) - (m_c * alpha) / (tf.sqrt(second) + epsilon)
  return tf.group(m.assign(tf.cast(m_c, dtype)), v.assign(tf.cast(v_c, dtype)),
                  var.assign(tf.cast(var_c, dtype)), *vhat_assign)


def sparse_update(opt, values, var, indices, lazy):
  """A sparse step: stock's rule (decay every row, add the summed rows) or LazyAdam's rows."""
  summed, unique = optimizer_lib._deduplicate_indexed_slices(values, indices)  # pylint: disable=protected-access
  m, v = opt.get_slot(var, "m"), opt.get_slot(var, "v")
  dtype = var.dtype.base_dtype
  beta1_power, beta2_power = opt._get_beta_accumulators()  # pylint: disable=protected-access
  cast = lambda x: tf.cast(x, dtype)
  beta1, beta2, epsilon = cast(opt._beta1_t), cast(opt._beta2_t), cast(opt._epsilon_t)  # pylint: disable=protected-access
  alpha = _alpha(cast(opt._lr_t), cast(beta1_power), cast(beta2_power))  # pylint: disable=protected-access
  locking = opt._use_locking  # pylint: disable=protected-access
  if lazy:  # only the named rows, in the C++ lazy rule's order
    m_rows = tf.gather(m, unique) * beta1 + summed * (1 - beta1)
    v_rows = tf.gather(v, unique) * beta2 + (summed * summed) * (1 - beta2)
    second, vhat_assign = _second_moment(opt, var, v_rows, unique)
    var_rows = (_decayed(opt, var, tf.gather(var, unique), dtype)
                - (alpha * m_rows) / (tf.sqrt(second) + epsilon))
    return tf.group(m.scatter_update(tf.IndexedSlices(m_rows, unique)),
                    v.scatter_update(tf.IndexedSlices(v_rows, unique)),
                    var.scatter_update(tf.IndexedSlices(var_rows, unique)), *vhat_assign)
  # Stock's _apply_sparse_shared, op for op, after TF Addons' decay of the named rows.
  if opt._decays(var):  # pylint: disable=protected-access
    decayed = _decayed(opt, var, tf.gather(var, unique), dtype)
    with tf.control_dependencies([var.scatter_update(tf.IndexedSlices(decayed, unique))]):
      summed = tf.identity(summed)
  m_t = m.assign(m * beta1, use_locking=locking)
  with tf.control_dependencies([m_t]):
    m_t = m.scatter_add(tf.IndexedSlices(summed * (1 - beta1), unique))
  v_t = v.assign(v * beta2, use_locking=locking)
  with tf.control_dependencies([v_t]):
    v_t = v.scatter_add(tf.IndexedSlices((summed * summed) * (1 - beta2), unique))
  second, vhat_assign = _second_moment(opt, var, v_t)
  var_update = var.assign_sub(alpha * m_t / (tf.sqrt(second) + epsilon), use_locking=locking)
  return tf.group(var_update, m_t, v_t, *vhat_assign)
