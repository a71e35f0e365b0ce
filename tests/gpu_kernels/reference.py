"""NumPy references for the kernels, without TensorFlow: the dense rule is tests/numpy_reference.py's
(stock's operation order; float16/bfloat16 computed in float32 and rounded once); the sparse rule
is stock's sparse Adam as cc/core/adam_update_rule.h spells it out (AdamSparseElement)."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from numpy_reference import (  # noqa: F401  (re-exported for the harness's tests)
    BFLOAT16, adam_step, compute_dtype, sparse_variant_step, sum_duplicates, variant_step)


def segments(indices):
  """The host-side grouping the sparse launcher takes: (order, segment_starts, unique_rows), int64:
  the positions of the gradient rows grouped by row (stable, so duplicates keep input order)."""
  indices = np.asarray(indices, np.int64)
  unique_rows, counts = np.unique(indices, return_counts=True)
  order = np.argsort(indices, kind="stable").astype(np.int64)
  starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
  return order, starts, unique_rows.astype(np.int64)


def sparse_step(var, m, v, grad, indices, beta1_power, beta2_power, lr, beta1, beta2, epsilon,
                lazy=False, scale_first=False, v_term=None):
  """One sparse step (var of shape [rows, ...], grad [len(indices), ...]); new (var, m, v).
  lazy: only the named rows change. Otherwise stock's: m and v decay on every row, the named rows
  add their (summed) gradient terms, var moves on every row. v's term is (g*g)*(1-beta2), or
  g*(g*(1-beta2)) with scale_first, or the summed `v_term` rows when given."""
  storage = var.dtype
  c = compute_dtype(storage)
  one = c(1)
  beta1_power, beta2_power, lr, beta1, beta2, epsilon = (
      c(x) for x in (beta1_power, beta2_power, lr, beta1, beta2, epsilon))
  alpha = (np.sqrt(one - beta2_power) * lr) / (one - beta1_power)
  rows, g = sum_duplicates(grad, indices)
  term = None if v_term is None else sum_duplicates(v_term, indices)[1]
  touched = rows if lazy else np.arange(var.shape[0])
  named = np.isin(touched, rows)
  where = np.searchsorted(rows, touched)
  m_c = beta1 * m[touched].astype(c)
  v_c = beta2 * v[touched].astype(c)
  with np.errstate(all="ignore"):
    g_rows = g[where[named]]
    m_c[named] = m_c[named] + (one - beta1) * g_rows
    if term is not None:
      v_c[named] = v_c[named] + term[where[named]]
    elif scale_first:
      v_c[named] = v_c[named] + g_rows * (g_rows * (one - beta2))
    else:
      v_c[named] = v_c[named] + (one - beta2) * (g_rows * g_rows)
    var_c = var[touched].astype(c) - (alpha * m_c) / (epsilon + np.sqrt(v_c))
  var, m, v = var.copy(), m.copy(), v.copy()
  var[touched], m[touched], v[touched] = (x.astype(storage) for x in (var_c, m_c, v_c))
  return var, m, v
