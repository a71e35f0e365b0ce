"""Bit-identical includes NaNs: where an update meets NaNs (and infinities, zeros of both signs) ours
gives stock's exact bits, sign and payload, in float32 and float64: the dense kernel (plain and
nesterov), the multi-tensor op, and the sparse rule (with duplicate rows).

Every combination of var, m, v and grad drawn from eight values (two of them NaNs with distinct
payloads and signs) is one element of one tensor, so a single step checks 4096 combinations, plus a
tail that is not a multiple of any vector width; each is run with several sets of scalars, NaN
hyperparameters among them.

Where two different NaNs meet in one addition or multiplication, x86 keeps the first source's, and
stock's dense kernel is not consistent about which that is: its unrolled loop orders the sources
differently in different lanes, so the same inputs give different NaNs at different positions
(measured: elements 8-15 of 64 differ from 0-7). So the dense grid is laid out 16 times at
different offsets: where stock's result for a combination is the same at every position, ours must
equal it; where stock itself varies, ours must be one of stock's results.

Whose NaN wins was read off TF 2.21's kernels. TF 2.15's and 2.16's float32 nesterov kernels keep
the other NaN where two meet in the numerator (96 of the combinations, every result NaN in both):
there, and only there, ours gives 2.21's NaN, and the test checks that the two differ in nothing
but the NaN's payload or sign.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gen_training_ops

import tf_adam_op
from helpers import assert_bitwise_equal

UINT = {np.float32: np.uint32, np.float64: np.uint64}
TF_VERSION = tuple(int(part) for part in tf.__version__.split(".")[:2])
QUIET = {np.float32: 0x7FC00000, np.float64: 0x7FF8000000000000}
SIGN = {np.float32: 0x80000000, np.float64: 0x8000000000000000}


def _nan(dtype, payload, negative=False):
  bits = QUIET[dtype] | payload | (SIGN[dtype] if negative else 0)
  return np.array([bits], UINT[dtype]).view(dtype)[0]


def _grid(dtype):
  values = np.array([1.5, -2.0, 0.0, -0.0, np.inf, -np.inf, _nan(dtype, 0x11),
                     _nan(dtype, 0x22, negative=True)], dtype)
  combos = np.array(list(itertools.product(range(len(values)), repeat=4)))
  combos = np.concatenate([combos, combos[-5:]])  # a tail past every vector width
  return [values[combos[:, i]] for i in range(4)]  # var, m, v, grad


def _scalar_sets(dtype):
  n = lambda p: _nan(dtype, p)
  base = dict(beta1_power=0.9, beta2_power=0.999, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
  changes = {"plain": {}, "beta1_power=1": dict(beta1_power=1.0),
             "both powers 1": dict(beta1_power=1.0, beta2_power=1.0),
             "lr NaN": dict(lr=n(0x33)), "epsilon NaN": dict(epsilon=n(0x44)),
             "beta1 NaN": dict(beta1=n(0x55)), "beta2 NaN": dict(beta2=n(0x66)),
             "beta2_power NaN": dict(beta2_power=n(0x77))}
  return {name: {k: dtype(x) for k, x in dict(base, **change).items()}
          for name, change in changes.items()}


def _variables(arrays):
  return [tf.Variable(a) for a in arrays]


COPIES = 16


def _dense(kind, dtype, scalars, nesterov):
  """The grid laid out COPIES times, copy k after k filler elements (so at COPIES alignments)."""
  grid = _grid(dtype)
  size = len(grid[0])
  filler = np.ones(COPIES, dtype)
  laid_out = [np.concatenate([part for k in range(COPIES) for part in (filler[:k], a)])
              for a in grid]
  starts = [k * size + k * (k + 1) // 2 for k in range(COPIES)]
  var0, m0, v0, g0 = laid_out
  var, m, v = _variables([var0, m0, v0])
  grad = tf.constant(g0)
  values = list(scalars.values())
  if kind == "stock":
    gen_training_ops.resource_apply_adam(var.handle, m.handle, v.handle, *values, grad,
                                         use_nesterov=nesterov)
  elif kind == "ours":
    tf_adam_op.ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *values, grad,
                                          use_nesterov=nesterov)
  else:
    tf_adam_op.ops.resource_apply_adam_v1_multi_no_advance(
        [var.handle], [m.handle], [v.handle], *values, [grad], use_nesterov=nesterov)
  # [copy, combination] for var, m and v, as raw bits
  return [np.stack([x.numpy()[start:start + size] for start in starts]).view(UINT[dtype])
          for x in (var, m, v)]


@pytest.mark.parametrize("nesterov", [False, True], ids=["adam", "nesterov"])
@pytest.mark.parametrize("kind", ["ours", "multi"])
@pytest.mark.parametrize("scalars", list(_scalar_sets(np.float32)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dense_nan_bits_equal_stocks(dtype, scalars, kind, nesterov):
  chosen = _scalar_sets(dtype)[scalars]
  ours = _dense(kind, dtype, chosen, nesterov)
  stock = _dense("stock", dtype, chosen, nesterov)
  for name, o, s in zip(("var", "m", "v"), ours, stock):
    assert (o == o[0]).all(), f"{name}: ours depends on the position"
    consistent = (s == s[0]).all(axis=0)
    assert consistent.mean() > 0.5, f"{name}: stock is position-dependent almost everywhere"
    differ = consistent & (o[0] != s[0])
    if TF_VERSION < (2, 17) and nesterov and dtype == np.float32:  # see the module doc
      differ &= ~(np.isnan(o[0].view(dtype)) & np.isnan(s[0].view(dtype)))
    differ = np.flatnonzero(differ)
    assert not len(differ), f"{name}: {len(differ)} combinations differ from stock, first {differ[:5]}"
    one_of_stocks = (s == o[0]).any(axis=0)[~consistent]
    assert one_of_stocks.all(), f"{name}: {(~one_of_stocks).sum()} where stock varies are none of its results"


def _sparse(cls, dtype, scalars):
  """One eager sparse step from the grid's var, m and v; every row named, half of them twice (the
  duplicates' gradients are the grid's gradients in another order, so NaNs meet NaNs)."""
  var0, m0, v0, g0 = _grid(dtype)
  rows = len(var0)
  w = tf.Variable(var0.reshape(rows, 1))
  opt = cls(scalars["lr"], scalars["beta1"], scalars["beta2"], scalars["epsilon"])
  opt._create_slots([w])
  opt.get_slot(w, "m").assign(m0.reshape(rows, 1))
  opt.get_slot(w, "v").assign(v0.reshape(rows, 1))
  b1p, b2p = opt._get_beta_accumulators()
  b1p.assign(tf.cast(scalars["beta1_power"], b1p.dtype))
  b2p.assign(tf.cast(scalars["beta2_power"], b2p.dtype))
  indices = np.concatenate([np.arange(rows), np.arange(0, rows, 2)])
  grads = np.concatenate([g0, g0[::-1][: len(indices) - rows]]).reshape(-1, 1)
  opt.apply_gradients([(tf.IndexedSlices(tf.constant(grads), tf.constant(indices),
                                         tf.constant([rows, 1])), w)])
  return [x.numpy() for x in (w, opt.get_slot(w, "m"), opt.get_slot(w, "v"))]


@pytest.mark.parametrize("scalars", ["plain", "beta1_power=1", "both powers 1", "beta2_power NaN"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_sparse_nan_bits_equal_stocks(dtype, scalars):
  """The optimizers' sparse steps (the beta powers are float32 variables, as stock keeps them;
  NaN hyperparameters are ValueErrors in our constructor, as docs/errors.md says)."""
  chosen = _scalar_sets(dtype)[scalars]
  chosen = {k: (np.float32(x) if k.endswith("power") else float(x)) for k, x in chosen.items()}
  assert_bitwise_equal(_sparse(tf_adam_op.AdamOptimizer, dtype, chosen),
                       _sparse(tf.compat.v1.train.AdamOptimizer, dtype, chosen),
                       names=("var", "m", "v"))
