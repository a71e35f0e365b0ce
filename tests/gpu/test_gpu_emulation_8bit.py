"""The 8-bit GPU kernels' bodies (cc/gpu/adam_8bit_gpu_bodies.h: one thread per block of 256), run on
the CPU over whole grids by `_gpu_emulation.emulate_gpu_*_8bit`, against the CPU kernels of
ResourceApplyAdam8bit and ResourceSparseApplyAdam8bit, bit for bit: var, codes and scales. The
launches on a GPU are the TF-free harness's (tests/gpu_kernels/test_8bit_kernels.py)."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import gpu_emulation
from numpy_reference import BFLOAT16
from tf_adam_op import ops

emulation = gpu_emulation()

DTYPES = {"float16": np.float16, "bfloat16": BFLOAT16, "float32": np.float32,
          "float64": np.float64}
THREADS = (1, 3, 5000)
POWERS = (float(np.float32(0.9 ** 3)), float(np.float32(0.999 ** 3)))
HYPER = (0.01, 0.9, 0.999, 1e-7)


def _states(rng, shape, amsgrad=False):
  """Codes (of var's shape) and scales, random: every code gets used."""
  blocks = -(-int(np.prod(shape)) // 256)
  states = []
  for _ in range(3 if amsgrad else 2):
    states += [rng.integers(0, 256, shape, dtype=np.uint8),
               np.abs(rng.standard_normal(blocks)).astype(np.float32)]
  return states


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("variant", ["adam", "nesterov", "amsgrad", "decay"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_dense_8bit_body_equals_the_cpu_kernel(rng, dtype_name, variant, threads):
  dtype = DTYPES[dtype_name]
  var = rng.standard_normal((37, 29)).astype(dtype)  # 1,073 elements: 5 blocks, the last short
  grad = rng.standard_normal((37, 29)).astype(dtype)
  states = _states(rng, var.shape, amsgrad=variant == "amsgrad")
  options = dict(use_nesterov=variant == "nesterov")
  if variant == "decay":
    options.update(weight_decay=0.1, weight_decay_times_lr=True)
  handles = [tf.Variable(x) for x in [var] + states]
  ops.resource_apply_adam_8bit(
      handles[0].handle, (handles[1].handle, handles[2].handle),
      (handles[3].handle, handles[4].handle), *POWERS, *HYPER, grad,
      vhat_states=(handles[5].handle, handles[6].handle) if variant == "amsgrad" else None,
      **options)
  emulated = [var.copy()] + [s.copy() for s in states]
  emulation.emulate_gpu_dense_8bit(emulated[0], grad, emulated[1:], *POWERS, *HYPER,
                                   threads=threads, **options)
  for actual, want in zip(emulated, handles):
    np.testing.assert_array_equal(actual.view(np.uint8), want.numpy().view(np.uint8))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("lazy", [False, True], ids=["sparse", "lazy"])
@pytest.mark.parametrize("width", [3, 100, 300])
@pytest.mark.parametrize("dtype_name", ["float32", "float64", "bfloat16"])
def test_sparse_8bit_body_equals_the_cpu_kernel(rng, dtype_name, width, lazy, threads):
  dtype = DTYPES[dtype_name]
  var = rng.standard_normal((40, width)).astype(dtype)
  indices = np.array([5, 17, 5, 39, 0], np.int64)
  grad = rng.standard_normal((5, width)).astype(dtype)
  states = _states(rng, var.shape)
  handles = [tf.Variable(x) for x in [var] + states]
  ops.resource_sparse_apply_adam_8bit(
      handles[0].handle, (handles[1].handle, handles[2].handle),
      (handles[3].handle, handles[4].handle), *POWERS, *HYPER, grad, indices, lazy=lazy)
  emulated = [var.copy()] + [s.copy() for s in states]
  emulation.emulate_gpu_sparse_8bit(emulated[0], grad, indices, emulated[1:], *POWERS, *HYPER,
                                    lazy=lazy, threads=threads)
  for actual, want in zip(emulated, handles):
    np.testing.assert_array_equal(actual.view(np.uint8), want.numpy().view(np.uint8))
