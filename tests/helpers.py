"""Shared helpers: running stock and tf_adam_op side by side and comparing every state tensor."""

import numpy as np
import tensorflow as tf

import tf_adam_op

OPTIMIZERS = {"stock": tf.compat.v1.train.AdamOptimizer, "ours": tf_adam_op.AdamOptimizer}


def optimizer_state(opt, var):
  """var, m, v, beta1_power, beta2_power as NumPy values (eager or inside a Session via fetch)."""
  return [var, opt.get_slot(var, "m"), opt.get_slot(var, "v"), *opt._get_beta_accumulators()]


def assert_bitwise_equal(actual, expected, names=("var", "m", "v", "beta1_power", "beta2_power")):
  for name, a, e in zip(names, actual, expected):
    a, e = np.asarray(a), np.asarray(e)
    assert a.dtype == e.dtype, f"{name}: dtype {a.dtype} != {e.dtype}"
    assert a.shape == e.shape, f"{name}: shape {a.shape} != {e.shape}"
    # Compare bits, so NaNs in the same places with the same payload count as equal, and -0 != 0.
    assert np.array_equal(np.atleast_1d(a).view(np.uint8), np.atleast_1d(e).view(np.uint8)), (
        f"{name} differs: max abs diff {np.nanmax(np.abs(a.astype(np.float64) - e.astype(np.float64)))}")


def random_grads(rng, shape, dtype, steps):
  return [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
