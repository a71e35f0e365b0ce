"""Independent NumPy references of Adam, in stock TensorFlow's operation order.

`adam_step` is stock's dense ApplyAdam kernel; `AdamReference` is stock's AdamOptimizer around it
(float32 beta power accumulators advanced by multiplication after each step). Arithmetic runs in the
"compute" dtype (float32 for float16/bfloat16/float32, float64 for float64) and is rounded once to
the storage dtype, which is tf_adam_op's documented rule; for float32/float64 it is stock's exactly.
NumPy never fuses a multiply-add, so every operation rounds as TF's CPU kernel does.
"""

import ml_dtypes
import numpy as np

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def compute_dtype(dtype):
  return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def adam_step(var, m, v, grad, beta1_power, beta2_power, lr, beta1, beta2, epsilon,
              use_nesterov=False):
  """One dense step; returns new (var, m, v) arrays in var's dtype."""
  storage = var.dtype
  c = compute_dtype(storage)
  one = c(1)
  beta1_power, beta2_power, lr, beta1, beta2, epsilon = (
      c(x) for x in (beta1_power, beta2_power, lr, beta1, beta2, epsilon))
  with np.errstate(all="ignore"):  # NaN/inf inputs are part of what is tested
    alpha = lr * np.sqrt(one - beta2_power) / (one - beta1_power)
    g = grad.astype(c)
    m_c = m.astype(c)
    v_c = v.astype(c)
    m_c = m_c + (g - m_c) * (one - beta1)
    v_c = v_c + (g * g - v_c) * (one - beta2)
    numerator = (g * (one - beta1) + beta1 * m_c) if use_nesterov else m_c
    var_c = var.astype(c) - (numerator * alpha) / (np.sqrt(v_c) + epsilon)
  return var_c.astype(storage), m_c.astype(storage), v_c.astype(storage)


class AdamReference:
  """Stock AdamOptimizer's trajectory for one variable, dense gradients."""

  def __init__(self, var, lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    self.var = np.array(var)
    self.m = np.zeros_like(self.var)
    self.v = np.zeros_like(self.var)
    self.hyper = (lr, beta1, beta2, epsilon)
    self.beta1_power = np.float32(beta1)
    self.beta2_power = np.float32(beta2)

  def step(self, grad):
    lr, beta1, beta2, epsilon = self.hyper
    self.var, self.m, self.v = adam_step(self.var, self.m, self.v, grad, self.beta1_power,
                                         self.beta2_power, lr, beta1, beta2, epsilon)
    self.beta1_power = self.beta1_power * np.float32(beta1)
    self.beta2_power = self.beta2_power * np.float32(beta2)


def sum_duplicates(grad, indices):
  """Unique rows (ascending) and their gradient rows summed in input order, starting from zero."""
  c = compute_dtype(grad.dtype)
  rows = np.unique(indices)
  summed = np.zeros((len(rows),) + grad.shape[1:], c)
  for k, row in enumerate(rows):
    for position in np.flatnonzero(indices == row):
      summed[k] = summed[k] + grad[position].astype(c)
  return rows, summed


def lazy_adam_step(var, m, v, grad, indices, beta1_power, beta2_power, lr, beta1, beta2, epsilon):
  """LazyAdam: only the rows named in `indices` change (duplicates summed first)."""
  storage = var.dtype
  c = compute_dtype(storage)
  one = c(1)
  beta1_power, beta2_power, lr, beta1, beta2, epsilon = (
      c(x) for x in (beta1_power, beta2_power, lr, beta1, beta2, epsilon))
  alpha = lr * np.sqrt(one - beta2_power) / (one - beta1_power)
  var, m, v = var.copy(), m.copy(), v.copy()
  rows, g = sum_duplicates(grad, indices)
  m_c = m[rows].astype(c) * beta1 + g * (one - beta1)
  v_c = v[rows].astype(c) * beta2 + (g * g) * (one - beta2)
  var[rows] = (var[rows].astype(c) - (alpha * m_c) / (np.sqrt(v_c) + epsilon)).astype(storage)
  m[rows] = m_c.astype(storage)
  v[rows] = v_c.astype(storage)
  return var, m, v
