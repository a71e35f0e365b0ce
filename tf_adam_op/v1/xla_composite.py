"""The v1 optimizers' XLA step without the ops' XLA kernels: what stock AdamOptimizer emits there.

Stock's ResourceApplyAdam (which has an XLA kernel) for plain dense float32/float64 updates, and
stock's scatter-based composition for non-lazy sparse ones, so results agree with stock under XLA.
What stock has no XLA path for is the shared composite (_step/composite.py): dense half/bfloat16
(computed in float32, rounded once), lazy sparse rows, AMSGrad (stock's ApplyAdamWithAmsgrad has
no XLA kernel) and the weight decay.
"""

import tensorflow as tf
from tensorflow.python.ops import gen_training_ops
from tensorflow.python.training import optimizer as optimizer_lib

from tf_adam_op._step import composite


def dense_update(var, slots, scalars, grad, decays, use_locking):
  """One dense step of resource variable `var`; `slots` are its m, v and vhat (None without
  AMSGrad); `scalars` the StepScalars of its dtype."""
  m, v, vhat = slots
  dtype = var.dtype.base_dtype
  if vhat is None and not decays and dtype in (tf.float32, tf.float64):
    inputs = [tf.cast(x, dtype) for x in scalars.inputs()]
    return gen_training_ops.resource_apply_adam(var.handle, m.handle, v.handle, *inputs, grad,
                                                use_locking=use_locking)
  return composite.dense_update(var, m, v, vhat, grad, scalars, decays)


def sparse_update(var, slots, scalars, values, indices, decays, use_locking, lazy):
  """A sparse step: stock's rule (decay every row, add the summed rows) or LazyAdam's rows."""
  summed, unique = optimizer_lib._deduplicate_indexed_slices(values, indices)
  m, v, vhat = slots
  if lazy:
    return composite.stock_form_rows_update(var, m, v, vhat, summed, unique, scalars, decays)
  # Stock's _apply_sparse_shared, op for op, after TF Addons' decay of the named rows.
  cast = lambda x: tf.cast(x, var.dtype.base_dtype)
  beta1, beta2, epsilon = cast(scalars.beta1), cast(scalars.beta2), cast(scalars.epsilon)
  if decays:
    rows = composite.decayed(tf.gather(var, unique), scalars)
    with tf.control_dependencies([var.scatter_update(tf.IndexedSlices(rows, unique))]):
      summed = tf.identity(summed)
  m_t = m.assign(m * beta1, use_locking=use_locking)
  with tf.control_dependencies([m_t]):
    m_t = m.scatter_add(tf.IndexedSlices(summed * (1 - beta1), unique))
  v_t = v.assign(v * beta2, use_locking=use_locking)
  with tf.control_dependencies([v_t]):
    v_t = v.scatter_add(tf.IndexedSlices((summed * summed) * (1 - beta2), unique))
  second, vhat_assign = composite.second_moment(vhat, v_t)
  var_update = var.assign_sub(composite.alpha(scalars, cast) * m_t / (tf.sqrt(second) + epsilon),
                              use_locking=use_locking)
  return tf.group(var_update, m_t, v_t, *vhat_assign)
