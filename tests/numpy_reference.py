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


def _step_scalars(storage, beta1_power, beta2_power, lr, beta1, beta2, epsilon):
  """The compute dtype, its 1, alpha and the hyperparameters in it, for a step on `storage`."""
  c = compute_dtype(storage)
  one = c(1)
  beta1_power, beta2_power, lr, beta1, beta2, epsilon = (
      c(x) for x in (beta1_power, beta2_power, lr, beta1, beta2, epsilon))
  alpha = lr * np.sqrt(one - beta2_power) / (one - beta1_power)
  return c, one, alpha, lr, beta1, beta2, epsilon


def lazy_adam_step(var, m, v, grad, indices, beta1_power, beta2_power, lr, beta1, beta2, epsilon):
  """LazyAdam: only the rows named in `indices` change (duplicates summed first)."""
  storage = var.dtype
  c, one, alpha, lr, beta1, beta2, epsilon = _step_scalars(
      storage, beta1_power, beta2_power, lr, beta1, beta2, epsilon)
  var, m, v = var.copy(), m.copy(), v.copy()
  rows, g = sum_duplicates(grad, indices)
  m_c = m[rows].astype(c) * beta1 + g * (one - beta1)
  v_c = v[rows].astype(c) * beta2 + (g * g) * (one - beta2)
  var[rows] = (var[rows].astype(c) - (alpha * m_c) / (np.sqrt(v_c) + epsilon)).astype(storage)
  m[rows] = m_c.astype(storage)
  v[rows] = v_c.astype(storage)
  return var, m, v


def _max_keeping_vhat(vhat, v):
  """max(vhat, v) as stock's AMSGrad kernel takes it (Eigen's cwiseMax: a NaN keeps vhat)."""
  return np.where(vhat < v, v, vhat)


def _decayed(var_c, weight_decay, lr, times_lr):
  """Decoupled weight decay: contrib / TF Addons' var - wd * var, or Keras 3's var - var * wd * lr."""
  if weight_decay is None:
    return var_c
  wd = var_c.dtype.type(weight_decay)
  return var_c - (var_c * wd) * var_c.dtype.type(lr) if times_lr else var_c - wd * var_c


def variant_step(var, m, v, vhat, grad, beta1_power, beta2_power, lr, beta1, beta2, epsilon,
                 weight_decay=None, times_lr=False, use_nesterov=False, one_minus_beta=None):
  """One dense step with AMSGrad (Reddi et al.: vhat = max(vhat, v), sqrt(vhat) in the denominator;
  vhat None: plain Adam) and decoupled weight decay (Loshchilov & Hutter, applied to var before the
  step), in stock's operation order. Returns (var, m, v, vhat) in var's dtype."""
  storage = var.dtype
  with np.errstate(all="ignore"):
    c, one, alpha, lr, beta1, beta2, epsilon = _step_scalars(
        storage, beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    g, m_c, v_c = grad.astype(c), m.astype(c), v.astype(c)
    # 1 - beta as the caller rounds it (Keras: from a double), else in the compute dtype.
    one_minus_beta1, one_minus_beta2 = ((one - beta1, one - beta2) if one_minus_beta is None
                                        else (c(one_minus_beta[0]), c(one_minus_beta[1])))
    m_c = m_c + (g - m_c) * one_minus_beta1
    v_c = v_c + (g * g - v_c) * one_minus_beta2
    second = v_c if vhat is None else _max_keeping_vhat(vhat.astype(c), v_c)
    numerator = (g * one_minus_beta1 + beta1 * m_c) if use_nesterov else m_c
    var_c = _decayed(var.astype(c), weight_decay, lr, times_lr)
    var_c = var_c - (numerator * alpha) / (np.sqrt(second) + epsilon)
  # The states keep their own dtype: var's, or the compute dtype for decoded 8-bit states.
  return (var_c.astype(storage), m_c.astype(m.dtype), v_c.astype(v.dtype),
          None if vhat is None else second.astype(vhat.dtype))


def sparse_variant_step(var, m, v, vhat, grad, indices, beta1_power, beta2_power, lr, beta1, beta2,
                        epsilon, lazy=False, weight_decay=None, times_lr=False):
  """A sparse step with AMSGrad and the weight decay. lazy=False: stock's sparse rule (m and v decay
  on every row, the summed gradient rows are added, var moves on every row, vhat = max(vhat, v) on
  every row); lazy=True: the named rows only. The weight decay applies to the named rows, once each
  (TF Addons: the deduplicated rows decay before the update). Returns (var, m, v, vhat)."""
  storage = var.dtype
  c, one, alpha, lr, beta1, beta2, epsilon = _step_scalars(
      storage, beta1_power, beta2_power, lr, beta1, beta2, epsilon)
  rows, g = sum_duplicates(grad, indices)
  var_c, m_c, v_c = var.astype(c), m.astype(c), v.astype(c)
  vhat_c = None if vhat is None else vhat.astype(c)
  chosen = rows if lazy else slice(None)
  m_c[chosen] = m_c[chosen] * beta1
  v_c[chosen] = v_c[chosen] * beta2
  m_c[rows] = m_c[rows] + g * (one - beta1)
  v_c[rows] = v_c[rows] + (g * g) * (one - beta2)
  var_c[rows] = _decayed(var_c[rows], weight_decay, lr, times_lr)
  if vhat_c is not None:
    vhat_c[chosen] = _max_keeping_vhat(vhat_c[chosen], v_c[chosen])
  second = v_c if vhat_c is None else vhat_c
  var_c[chosen] = var_c[chosen] - (alpha * m_c[chosen]) / (np.sqrt(second[chosen]) + epsilon)
  result = [var_c, m_c, v_c, vhat_c]
  originals = [var, m, v, vhat]
  out = []
  for new, old in zip(result, originals):
    if new is None:
      out.append(None)
      continue
    kept = old.copy()
    kept[chosen] = new[chosen].astype(old.dtype)  # states: var's dtype, or decoded 8-bit ones'
    out.append(kept)
  return tuple(out)
