"""The update rule composed from TF ops: what an XLA step runs where the ops' XLA kernels cannot be
used (a build without them, a GPU without the CUDA kernels, TF_ADAM_OP_XLA_KERNELS=0).

Written once for both families, in the C++ rule's order (cc/core/adam_update_rule.h), on the
values of a StepScalars; the families choose where their host's own XLA path (stock's
ResourceApplyAdam, Keras's update_step) is the rule already, and use this for the rest:
16-bit variables (computed in float32, rounded once), lazy rows, AMSGrad and the weight decay.
"""

import tensorflow as tf

from tf_adam_op import ops


def decayed(var_c, scalars):
  """var_c after the decoupled weight decay, in the host's expression (StepScalars)."""
  weight_decay = tf.cast(scalars.weight_decay, var_c.dtype)
  if scalars.weight_decay_times_lr:  # Keras 3
    return var_c - (var_c * weight_decay) * tf.cast(scalars.lr, var_c.dtype)
  return var_c - weight_decay * var_c  # TF1 contrib


def alpha(scalars, cast):
  """lr * sqrt(1 - beta2^t) / (1 - beta1^t), from the scalars as `cast` gives them."""
  return cast(scalars.lr) * tf.sqrt(1 - cast(scalars.beta2_power)) / (
      1 - cast(scalars.beta1_power))


def one_minus_beta(scalars, cast):
  if scalars.one_minus_beta is not None:
    return tuple(map(cast, scalars.one_minus_beta))
  return 1 - cast(scalars.beta1), 1 - cast(scalars.beta2)


def dense_form(g, g_squared, m_c, v_c, vhat_c, var_c, scalars, decays):
  """The rule on compute-dtype tensors (g_squared: the gradient's squares, summed per row where a
  sparse gradient repeats an index): returns m, v, vhat (None without AMSGrad) and var."""
  cast = lambda x: tf.cast(x, m_c.dtype)
  if decays:
    var_c = decayed(var_c, scalars)
  step = alpha(scalars, cast)
  one_minus_beta1, one_minus_beta2 = one_minus_beta(scalars, cast)
  m_c = m_c + (g - m_c) * one_minus_beta1
  v_c = v_c + (g_squared - v_c) * one_minus_beta2
  second = v_c
  if vhat_c is not None:
    vhat_c = tf.maximum(vhat_c, v_c)
    second = vhat_c
  var_c = var_c - (m_c * step) / (tf.sqrt(second) + cast(scalars.epsilon))
  return m_c, v_c, vhat_c, var_c


def dense_update(var, m, v, vhat, grad, scalars, decays, g_squared=None):
  """A whole-variable update, computed in the compute dtype and rounded once on store."""
  dtype = var.dtype.base_dtype
  c = lambda x: tf.cast(x, ops.compute_dtype(dtype))
  g = c(grad)
  g_squared = g * g if g_squared is None else c(g_squared)
  m_c, v_c, vhat_c, var_c = dense_form(g, g_squared, c(m), c(v),
                                       c(vhat) if vhat is not None else None, c(var), scalars,
                                       decays)
  store = lambda x: tf.cast(x, dtype)
  updates = [m.assign(store(m_c)), v.assign(store(v_c)), var.assign(store(var_c))]
  if vhat is not None:
    updates.append(vhat.assign(store(vhat_c)))
  return tf.group(*updates)


def dense_rows_update(var, m, v, vhat, values, indices, scalars, decays):
  """The dense form on the named rows only (Keras's lazy rows): duplicates summed as the sparse
  op sums them (in input order, as unsorted_segment_sum), the squares summed apart."""
  dtype = var.dtype.base_dtype
  c = lambda x: tf.cast(x, ops.compute_dtype(dtype))
  unique, positions = tf.unique(indices)
  count = tf.shape(unique)[0]
  g = tf.math.unsorted_segment_sum(c(values), positions, count)
  g_squared = tf.math.unsorted_segment_sum(c(tf.square(values)), positions, count)
  gather = lambda x: c(tf.gather(x, unique))
  m_c, v_c, vhat_c, var_c = dense_form(g, g_squared, gather(m), gather(v),
                                       gather(vhat) if vhat is not None else None, gather(var),
                                       scalars, decays)
  rows = lambda x: tf.IndexedSlices(tf.cast(x, dtype), unique)
  updates = [m.scatter_update(rows(m_c)), v.scatter_update(rows(v_c)),
             var.scatter_update(rows(var_c))]
  if vhat is not None:
    updates.append(vhat.scatter_update(rows(vhat_c)))
  return tf.group(*updates)


def second_moment(vhat, v_c, rows=None):
  """v_c, or with AMSGrad (a vhat slot) max(vhat, v_c) and the vhat assignment (of `rows` only,
  when given)."""
  if vhat is None:
    return v_c, []
  old = tf.gather(vhat, rows) if rows is not None else vhat.read_value()
  vhat_c = tf.maximum(tf.cast(old, v_c.dtype), v_c)
  stored = tf.cast(vhat_c, vhat.dtype.base_dtype)
  assign = (vhat.scatter_update(tf.IndexedSlices(stored, rows)) if rows is not None
            else vhat.assign(stored))
  return vhat_c, [assign]


def stock_form_rows_update(var, m, v, vhat, summed, unique, scalars, decays):
  """v1's lazy rows (deduplicated): m = m * beta1 + g * (1 - beta1) in the variable's dtype, in
  the C++ lazy rule's order."""
  cast = lambda x: tf.cast(x, var.dtype.base_dtype)
  beta1, beta2, epsilon = cast(scalars.beta1), cast(scalars.beta2), cast(scalars.epsilon)
  m_rows = tf.gather(m, unique) * beta1 + summed * (1 - beta1)
  v_rows = tf.gather(v, unique) * beta2 + (summed * summed) * (1 - beta2)
  second, vhat_assign = second_moment(vhat, v_rows, unique)
  var_rows = tf.gather(var, unique)
  if decays:
    var_rows = decayed(var_rows, scalars)
  var_rows = var_rows - (alpha(scalars, cast) * m_rows) / (tf.sqrt(second) + epsilon)
  return tf.group(m.scatter_update(tf.IndexedSlices(m_rows, unique)),
                  v.scatter_update(tf.IndexedSlices(v_rows, unique)),
                  var.scatter_update(tf.IndexedSlices(var_rows, unique)), *vhat_assign)
