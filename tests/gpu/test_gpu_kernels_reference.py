"""The GPU harness's sparse NumPy reference (tests/gpu_kernels/reference.py), which judges the CUDA
kernels where TensorFlow is not, is itself checked here against the CPU sparse op, bit for bit:
lazy and all rows, both operation orders, v's term given, duplicate unsorted indices, every dtype
(16-bit ones also rounded once from float32, as both compute)."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf_adam_op
from helpers import assert_bitwise_equal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu_kernels"))
import reference

SCALARS = (np.float32(0.9**3), np.float32(0.999**3), 0.01, 0.9, 0.999, 1e-8)
DTYPES = {"float16": np.float16, "bfloat16": reference.BFLOAT16, "float32": np.float32,
          "float64": np.float64}


@pytest.mark.parametrize("v_term", [False, True], ids=["v term inside", "v term given"])
@pytest.mark.parametrize("scale_first", [False, True], ids=["stock order", "scale first"])
@pytest.mark.parametrize("lazy", [False, True], ids=["all rows", "lazy"])
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_the_harness_sparse_reference_equals_the_cpu_op(rng, dtype, lazy, scale_first, v_term):
  rows, width, batch = 40, 7, 30
  var, m = (rng.standard_normal((rows, width)).astype(dtype) for _ in range(2))
  v = (0.01 + np.abs(0.01 * rng.standard_normal((rows, width)))).astype(dtype)
  indices = rng.integers(0, rows, batch)
  indices[10:20] = indices[:10]  # duplicates, unsorted
  grad = rng.standard_normal((batch, width)).astype(dtype)
  term = None
  if v_term:
    c = reference.compute_dtype(dtype)
    term = ((grad.astype(c) * grad.astype(c)) * (c(1) - c(0.999))).astype(dtype)
  expected = reference.sparse_step(var, m, v, grad, indices, *SCALARS, lazy=lazy,
                                   scale_first=scale_first, v_term=term)
  variables = [tf.Variable(x) for x in (var, m, v)]
  tf_adam_op.ops.resource_sparse_apply_adam_v1(
      *(x.handle for x in variables), *SCALARS, tf.constant(grad), tf.constant(indices),
      lazy=lazy, scale_first=scale_first, v_term=None if term is None else tf.constant(term))
  assert_bitwise_equal([x.numpy() for x in variables], list(expected), names=("var", "m", "v"))
