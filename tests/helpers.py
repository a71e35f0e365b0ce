"""Shared helpers: running stock and tf_adam_op side by side and comparing every state tensor."""

import functools
import os

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


@functools.lru_cache(maxsize=None)
def gpu_emulation():
  """The test-only module `_gpu_emulation` (tests/gpu/emulation: the CUDA kernels' bodies run on
  the CPU), built beside the package and never installed: loaded from the folder CMake built the
  package in. Its absence is an error, not a skip: every build from this checkout makes it."""
  import glob
  import importlib.util
  from tf_adam_op import _build_info
  found = glob.glob(os.path.join(_build_info.BUILD_DIR, "_gpu_emulation*.so"))
  if not found:
    raise RuntimeError(
        f"no _gpu_emulation module in {_build_info.BUILD_DIR}: the tests need the package built "
        "from this checkout (pip install \".[test]\", or the editable install of README, "
        "Developing), whose build folder keeps it")
  spec = importlib.util.spec_from_file_location("_gpu_emulation", found[0])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
