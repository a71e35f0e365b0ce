"""The update under XLA where Keras's own update_step is not what the fused ops compute.

XLA cannot compile the custom ops. For float32/float64 variables without `lazy` Keras's own
update_step is the fused ops' rule, op for op, so it runs as it is (Keras's XLA numbers). What Keras
has no rule for is composed here from TF ops in the fused ops' order (core/adam_update_rule.h):
float16/bfloat16 variables computed in float32 and rounded once (their weight decay in the same
pass, as the op does it), and lazy IndexedSlices updates (the named rows only, in the dense form;
for float32/float64 Keras's own weight decay pass has run before).
"""

import tensorflow as tf

from tf_adam_op import ops


def keras_rule_applies(opt, grad, var):
  """Whether Keras's own update_step computes what the fused ops would for (grad, var)."""
  lazy_rows = opt.lazy and isinstance(grad, tf.IndexedSlices)
  return var.dtype.base_dtype in (tf.float32, tf.float64) and not lazy_rows


def _rule(g, g_squared, m_c, v_c, vhat_c, var_c, scalars, one_minus_beta, weight_decay):
  """The dense form of the rule on compute-dtype tensors: returns m, v, vhat (or None), var.
  With a weight decay, var first loses var * weight_decay * lr (Keras's expression), in the same
  pass, as the op's kTimesVarLr rule does."""
  beta1_power, beta2_power, lr, _, _, epsilon = scalars
  if weight_decay is not None:
    var_c = var_c - (var_c * weight_decay) * lr
  alpha = lr * tf.sqrt(1 - beta2_power) / (1 - beta1_power)
  m_c = m_c + (g - m_c) * one_minus_beta[0]
  v_c = v_c + (g_squared - v_c) * one_minus_beta[1]
  second = v_c
  if vhat_c is not None:
    vhat_c = tf.maximum(vhat_c, v_c)
    second = vhat_c
  var_c = var_c - (m_c * alpha) / (tf.sqrt(second) + epsilon)
  return m_c, v_c, vhat_c, var_c


def update(opt, grad, keras_var, learning_rate):
  """One variable's update as the fused op computes it, from XLA-compilable ops."""
  var = keras_var.value if hasattr(keras_var, "value") else keras_var
  dtype = var.dtype.base_dtype
  compute = ops.compute_dtype(dtype)
  index = opt._get_variable_index(keras_var)  # pylint: disable=protected-access
  m = opt._momentums[index].value  # pylint: disable=protected-access
  v = opt._velocities[index].value  # pylint: disable=protected-access
  vhat = opt._velocity_hats[index].value if opt.amsgrad else None  # pylint: disable=protected-access
  scalars, one_minus_beta = opt._scalars(dtype, learning_rate)  # pylint: disable=protected-access
  # The decay Keras's own pass leaves to the op (16-bit variables: _FusedAdamMixin._decays_in_op).
  decay = opt._options(dtype, opt._decays(var)).get("weight_decay")  # pylint: disable=protected-access
  c = lambda x: tf.cast(x, compute)
  store = lambda x: tf.cast(x, dtype)
  if isinstance(grad, tf.IndexedSlices) and opt.lazy:
    values = tf.cast(grad.values, dtype)
    # Duplicates summed as the sparse op sums them (in input order, as unsorted_segment_sum).
    unique, positions = tf.unique(grad.indices)
    count = tf.shape(unique)[0]
    g = tf.math.unsorted_segment_sum(c(values), positions, count)
    g_squared = tf.math.unsorted_segment_sum(c(tf.square(values)), positions, count)
    gather = lambda x: c(tf.gather(x, unique))
    m_c, v_c, vhat_c, var_c = _rule(g, g_squared, gather(m), gather(v),
                                    gather(vhat) if vhat is not None else None, gather(var),
                                    scalars, one_minus_beta, decay)
    rows = lambda x: tf.IndexedSlices(store(x), unique)
    updates = [m.scatter_update(rows(m_c)), v.scatter_update(rows(v_c)),
               var.scatter_update(rows(var_c))]
    if vhat is not None:
      updates.append(vhat.scatter_update(rows(vhat_c)))
    return tf.group(*updates)
  if isinstance(grad, tf.IndexedSlices):  # 16 bits, Keras's rule: densified, squares summed
    values = tf.cast(grad.values, dtype)
    shape = tf.shape(var, out_type=grad.indices.dtype)
    g = c(tf.convert_to_tensor(tf.IndexedSlices(values, grad.indices, shape)))
    g_squared = c(tf.convert_to_tensor(tf.IndexedSlices(tf.square(values), grad.indices, shape)))
  else:
    g = c(tf.cast(grad, dtype))
    g_squared = g * g
  m_c, v_c, vhat_c, var_c = _rule(g, g_squared, c(m), c(v),
                                  c(vhat) if vhat is not None else None, c(var), scalars,
                                  one_minus_beta, decay)
  updates = [m.assign(store(m_c)), v.assign(store(v_c)), var.assign(store(var_c))]
  if vhat is not None:
    updates.append(vhat.assign(store(vhat_c)))
  return tf.group(*updates)
