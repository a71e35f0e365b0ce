"""The fused ops' scalar inputs as Keras computes them, from the optimizer's public hyperparameters.

Keras's update_step: `ops.cast(self.beta_1, dtype)` (a Python float becomes a float32 first, so a
float64 variable's powers are of float32(0.9)), then `ops.power(beta, cast(iterations + 1))`; it
multiplies by `1 - self.beta_1`, for a Python float a double rounded once to the variable's dtype
(not float32(1) - float32(beta_1)); AdamW decays var -= var * weight_decay * lr, weight_decay cast
as Keras casts it.
"""

import tensorflow as tf

from tf_adam_op import ops
from tf_adam_op._step.scalars import StepScalars
from tf_adam_op.keras._hyperparameters import as_one_value


def as_keras_converts(value, dtype):
  """A Python number straight to `dtype` (keras.ops' arithmetic converts it so), else a cast."""
  if isinstance(value, (int, float)):
    return tf.constant(value, dtype)
  return tf.cast(value, dtype)


def step_scalars(opt, dtype, learning_rate, decays=False):
  """The StepScalars of a Keras Adam/AdamW step of `dtype` variables (`opt`'s iterations, beta_1,
  beta_2, epsilon and, for an update that decays, weight_decay: all public Keras attributes)."""
  compute = ops.compute_dtype(dtype)
  one = as_one_value  # a hyperparameter of one element, (1,) or [0.9], as Keras broadcasts it
  local_step = tf.cast(opt.iterations + 1, compute)
  beta_1, beta_2 = one(tf.cast(opt.beta_1, compute)), one(tf.cast(opt.beta_2, compute))
  one_minus_beta = tuple(one(as_keras_converts(1 - b, compute)) for b in (opt.beta_1, opt.beta_2))
  weight_decay = None
  if decays:
    weight_decay = one(tf.cast(opt.weight_decay, compute))
  return StepScalars(tf.pow(beta_1, local_step), tf.pow(beta_2, local_step),
                     tf.cast(learning_rate, compute), beta_1, beta_2,
                     one(as_keras_converts(opt.epsilon, compute)), one_minus_beta=one_minus_beta,
                     weight_decay=weight_decay, weight_decay_times_lr=True)


def as_dtype(grad, dtype):
  """A dense gradient as a tensor of its variable's dtype (Keras casts it too)."""
  if isinstance(grad, tf.Tensor) and grad.dtype == dtype:
    return grad
  return tf.cast(grad, dtype)
