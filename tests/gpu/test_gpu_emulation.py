"""The CUDA kernels' bodies, run on the CPU by `_gpu_emulation.emulate_gpu_*` (a test-only module) over
whole grids (one thread after another, with the launchers' own chunking and packed sparse segments),
against the CPU kernels, bit for bit. This checks every GPU kernel's index arithmetic on any
machine: grid-stride loops with fewer and more threads than elements, the multi-tensor offsets
across 48-tensor launches and empty tensors, the segment sums of duplicate indices and the row
search of the all-rows update. What it cannot check, the launches on a real GPU, is
tests/gpu/test_gpu.py's."""

import numpy as np
import pytest
import tensorflow as tf

from numpy_reference import BFLOAT16
from helpers import gpu_emulation
from tf_adam_op import _core, ops

emulation = gpu_emulation()

DTYPES = {"float16": np.float16, "bfloat16": BFLOAT16, "float32": np.float32,
          "float64": np.float64}
THREADS = (1, 7, 5000)  # one thread for everything; a few, striding; more threads than elements
# Beta powers exactly representable in float32, so float and double powers mean the same numbers.
POWERS = (float(np.float32(0.9 ** 3)), float(np.float32(0.999 ** 3)))
HYPER = (0.01, 0.9, 0.999, 1e-7)


def _arrays(rng, shape, dtype):
  var = rng.standard_normal(shape).astype(dtype)
  m = (rng.standard_normal(shape) * 0.1).astype(dtype)
  v = np.abs(rng.standard_normal(shape) * 0.01).astype(dtype)
  grad = rng.standard_normal(shape).astype(dtype)
  return var, m, v, grad


def _assert_bits_equal(actual, expected):
  assert actual.dtype == expected.dtype
  np.testing.assert_array_equal(actual.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("nesterov", [False, True], ids=["adam", "nesterov"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_dense_kernel_body_equals_the_cpu_rule(rng, dtype_name, nesterov, threads):
  dtype = DTYPES[dtype_name]
  var, m, v, grad = _arrays(rng, (37, 29), dtype)
  expected = [a.copy() for a in (var, m, v)]
  _core.apply_adam(*expected, grad, *POWERS, *HYPER, use_nesterov=nesterov)
  emulation.emulate_gpu_dense(var, m, v, grad, *POWERS, *HYPER, use_nesterov=nesterov,
                          powers_are_double=dtype_name == "float64", threads=threads)
  for actual, want in zip((var, m, v), expected):
    _assert_bits_equal(actual, want)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("nesterov", [False, True], ids=["adam", "nesterov"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_multi_tensor_launches_equal_the_cpu_rule(rng, dtype_name, nesterov, threads):
  """100 tensors: three launches (48, 48, 4), sizes from 0 to a few thousand elements."""
  dtype = DTYPES[dtype_name]
  sizes = [int(s) for s in rng.integers(0, 300, size=100)]
  sizes[5] = sizes[47] = sizes[48] = 0  # empty ones, also at a launch's edges
  sizes[60] = 4096
  tensors = [_arrays(rng, (size,), dtype) for size in sizes]
  expected = []
  for var, m, v, grad in tensors:
    copies = [a.copy() for a in (var, m, v)]
    _core.apply_adam(*copies, grad, *POWERS, *HYPER, use_nesterov=nesterov)
    expected.append(copies)
  vars_, ms, vs, grads = (list(group) for group in zip(*tensors))
  emulation.emulate_gpu_multi(vars_, ms, vs, grads, *POWERS, *HYPER, use_nesterov=nesterov,
                          powers_are_double=False, threads=threads)
  for (var, m, v, _), want in zip(tensors, expected):
    for actual, expected_array in zip((var, m, v), want):
      _assert_bits_equal(actual, expected_array)


def test_multi_tensor_launch_with_only_empty_tensors_changes_nothing(rng):
  tensors = [_arrays(rng, (0,), np.float32) for _ in range(50)]
  vars_, ms, vs, grads = (list(group) for group in zip(*tensors))
  emulation.emulate_gpu_multi(vars_, ms, vs, grads, *POWERS, *HYPER, threads=3)
  assert all(var.size == 0 for var in vars_)


def _cpu_sparse_op(var, m, v, grad, indices, lazy, scale_first, v_term=None):
  """The CPU kernel of ResourceSparseApplyAdamV1 on copies of the arrays."""
  with tf.device("/CPU:0"):
    variables = [tf.Variable(a) for a in (var, m, v)]
    compute = np.float64 if var.dtype == np.float64 else np.float32
    scalars = [tf.constant(x, compute) for x in (*POWERS, *HYPER)]
    ops.resource_sparse_apply_adam_v1(*(x.handle for x in variables), *scalars,
                                      tf.constant(grad), tf.constant(indices), lazy=lazy,
                                      scale_first=scale_first,
                                      v_term=None if v_term is None else tf.constant(v_term))
    return [x.numpy() for x in variables]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("v_term_order", ["stock-order", "scale-first", "v-term-given"])
@pytest.mark.parametrize("lazy", [False, True], ids=["all-rows", "lazy"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_sparse_kernels_equal_the_cpu_op(rng, dtype_name, lazy, v_term_order, threads):
  """Duplicates (summed in input order), unsorted indices, first and last rows, rows never named;
  v's term computed either way, or handed in."""
  dtype = DTYPES[dtype_name]
  var, m, v, _ = _arrays(rng, (40, 6), dtype)
  indices = np.array([7, 0, 39, 7, 12, 7, 39, 3, 0, 25], np.int64)
  grad = rng.standard_normal((len(indices), 6)).astype(dtype)
  scale_first = v_term_order == "scale-first"
  v_term = np.abs(rng.standard_normal(grad.shape)).astype(dtype) if v_term_order == "v-term-given" else None
  expected = _cpu_sparse_op(var, m, v, grad, indices, lazy, scale_first, v_term)
  emulation.emulate_gpu_sparse(var, m, v, grad, indices, *POWERS, *HYPER, lazy=lazy,
                           scale_first=scale_first, powers_are_double=dtype_name == "float64",
                           v_term=v_term, threads=threads)
  for actual, want in zip((var, m, v), expected):
    _assert_bits_equal(actual, want)


def test_the_emulation_sees_a_wrong_kernel():
  """The comparison has teeth: a different update (another learning rate) does not pass."""
  rng = np.random.default_rng(0)
  var, m, v, grad = _arrays(rng, (64,), np.float32)
  expected = [a.copy() for a in (var, m, v)]
  _core.apply_adam(*expected, grad, *POWERS, *HYPER)
  emulation.emulate_gpu_dense(var, m, v, grad, *POWERS, 0.02, *HYPER[1:], threads=3)
  with pytest.raises(AssertionError):
    _assert_bits_equal(var, expected[0])
