"""The raw ops against the NumPy reference (every dtype) and stock's kernels (float32/float64)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gen_training_ops  # stock's generated wrappers (positional)

from numpy_reference import BFLOAT16, adam_step
from helpers import assert_bitwise_equal
import tf_adam_op
from tf_adam_op import _core

DTYPES = {"float16": np.float16, "bfloat16": BFLOAT16, "float32": np.float32, "float64": np.float64}
SIZES = [1, 7, 1023, 2**20 + 3]
# Step 3 of beta1=0.9, beta2=0.999, as float32 accumulators would hold them.
SCALARS = dict(beta1_power=np.float32(0.9)**3, beta2_power=np.float32(0.999)**3, lr=0.01, beta1=0.9,
               beta2=0.999, epsilon=1e-8)


def _state(rng, size, dtype):
  var = rng.standard_normal(size).astype(dtype)
  m = (0.1 * rng.standard_normal(size)).astype(dtype)
  v = np.abs(0.01 * rng.standard_normal(size)).astype(dtype)
  grad = rng.standard_normal(size).astype(dtype)
  return var, m, v, grad


def _tf_scalars(dtype):
  compute = tf_adam_op.ops.compute_dtype(dtype)
  return [tf.constant(x, compute) for x in SCALARS.values()]


@pytest.mark.parametrize("use_nesterov", [False, True], ids=["plain", "nesterov"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_resource_op_matches_reference_and_core(rng, dtype, size, use_nesterov):
  var0, m0, v0, grad = _state(rng, size, dtype)
  expected = adam_step(var0, m0, v0, grad, *SCALARS.values(), use_nesterov=use_nesterov)

  var, m, v = (tf.Variable(x) for x in (var0, m0, v0))
  tf_adam_op.ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *_tf_scalars(dtype),
                                        tf.constant(grad), use_nesterov=use_nesterov)
  assert_bitwise_equal([var.numpy(), m.numpy(), v.numpy()], expected)

  core_state = [x.copy() for x in (var0, m0, v0)]
  _core.apply_adam(*core_state, grad, *SCALARS.values(), use_nesterov=use_nesterov)
  assert_bitwise_equal(core_state, expected)


@pytest.mark.parametrize("use_nesterov", [False, True], ids=["plain", "nesterov"])
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_ref_op_matches_reference_in_a_session(rng, dtype, use_nesterov):
  var0, m0, v0, grad = _state(rng, 1023, dtype)
  expected = adam_step(var0, m0, v0, grad, *SCALARS.values(), use_nesterov=use_nesterov)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v = (tf.compat.v1.Variable(x, use_resource=False) for x in (var0, m0, v0))
    out = tf_adam_op.ops.apply_adam_v1(var, m, v, *SCALARS.values(), grad,
                                       use_nesterov=use_nesterov)
    assert out.dtype._is_ref_dtype  # out is var's ref, as stock's ApplyAdam
    session.run(tf.compat.v1.global_variables_initializer())
    session.run(out)
    assert_bitwise_equal(session.run([var, m, v]), expected)


@pytest.mark.parametrize("use_nesterov", [False, True], ids=["plain", "nesterov"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_bit_identical_to_stock_kernel(rng, dtype, use_nesterov):
  # 2^20 + 3: large enough that both kernels shard over the thread pool, odd so tails are handled.
  var0, m0, v0, grad = _state(rng, 2**20 + 3, dtype)
  results = []
  for apply in (gen_training_ops.resource_apply_adam, tf_adam_op.ops.resource_apply_adam_v1):
    var, m, v = (tf.Variable(x) for x in (var0, m0, v0))
    for _ in range(3):
      apply(var.handle, m.handle, v.handle, *_tf_scalars(dtype), tf.constant(grad),
            use_nesterov=use_nesterov)
    results.append([var.numpy(), m.numpy(), v.numpy()])
  assert_bitwise_equal(*results)


def test_python_number_hyperparameters_take_the_compute_dtype(rng):
  var0, m0, v0, grad = _state(rng, 9, np.float64)
  var, m, v = (tf.Variable(x) for x in (var0, m0, v0))
  tf_adam_op.ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(), grad)
  assert_bitwise_equal([var.numpy(), m.numpy(), v.numpy()],
                       adam_step(var0, m0, v0, grad, *SCALARS.values()))


def test_op_has_no_gradient():
  var = tf.Variable([1.0, 2.0])
  m, v = tf.Variable([0.0, 0.0]), tf.Variable([0.0, 0.0])
  grad = tf.constant([0.5, 0.5])
  with tf.GradientTape() as tape:
    tape.watch(grad)
    tf_adam_op.ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(), grad)
    y = tf.reduce_sum(var.read_value())
  assert tape.gradient(y, grad) is None


def test_core_module_reports_build_facts():
  info = _core.build_info()
  assert info["tf_version"].split(".")[:2] == tf.__version__.split(".")[:2]
  assert info["compiler"]
  assert info["cuda_kernels_built"] in (True, False)


@pytest.mark.parametrize("bad, error", [
    (dict(grad=np.zeros(4, np.float32)), ValueError),      # shape
    (dict(m=np.zeros(3, np.float64)), TypeError),          # dtype
    (dict(v=np.zeros(3, np.int32)), TypeError),
])
def test_core_module_rejects_bad_operands(bad, error):
  arrays = dict(var=np.ones(3, np.float32), m=np.zeros(3, np.float32), v=np.zeros(3, np.float32),
                grad=np.ones(3, np.float32))
  arrays.update(bad)
  before = {k: a.copy() for k, a in arrays.items()}
  with pytest.raises(error):
    _core.apply_adam(arrays["var"], arrays["m"], arrays["v"], arrays["grad"], *SCALARS.values())
  for k in arrays:
    np.testing.assert_array_equal(arrays[k], before[k])


@pytest.mark.parametrize("layout", ["big-endian var", "all big-endian", "m is a view of var",
                                    "grad is var", "v overlaps m", "grad is a view of v"])
def test_core_module_rejects_byte_swapped_and_aliased_arrays(layout):
  """Byte-swapped arrays would be read as garbage; aliased ones are read while written."""
  var, m, v, grad = (np.linspace(1, 2, 8, dtype=np.float32), np.zeros(8, np.float32),
                     np.zeros(8, np.float32), np.full(8, 0.5, np.float32))
  if layout == "big-endian var":
    var = var.astype(">f4")
  elif layout == "all big-endian":
    var, m, v, grad = (a.astype(">f4") for a in (var, m, v, grad))
  elif layout == "m is a view of var":
    m = var[:]
  elif layout == "grad is var":
    grad = var
  elif layout == "v overlaps m":
    both = np.zeros(12, np.float32)
    m, v = both[:8], both[4:]
  elif layout == "grad is a view of v":
    grad = v.reshape(2, 4).reshape(8)
  before = [a.copy() for a in (var, m, v, grad)]
  match = "byte order" if "endian" in layout else "share memory"
  with pytest.raises(ValueError, match=match):
    _core.apply_adam(var, m, v, grad, *SCALARS.values())
  for a, b in zip((var, m, v, grad), before):
    np.testing.assert_array_equal(a, b)


def test_core_module_rejects_integer_arrays():
  ints = [np.zeros(3, np.int32) for _ in range(4)]
  with pytest.raises(TypeError, match="int32"):
    _core.apply_adam(*ints, *SCALARS.values())
