"""docs/errors.md, dense and variable cases: each gets a clear error of the right type (or a correct
result) and leaves every variable bit-identical."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_bitwise_equal
from numpy_reference import adam_step
import tf_adam_op
from tf_adam_op import ops

SCALARS = dict(beta1_power=0.9, beta2_power=0.999, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
errors = tf.errors


def _variables(*arrays):
  return [tf.Variable(np.asarray(a, np.float32)) for a in arrays]


def _snapshot(variables):
  return [v.numpy().copy() for v in variables]


def _apply(var, m, v, grad, **overrides):
  scalars = dict(SCALARS, **overrides)
  return ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *scalars.values(), grad)


def assert_rejected(call, variables, error, match=None):
  before = _snapshot(variables)
  with pytest.raises(error, match=match):
    call()
  assert_bitwise_equal(_snapshot(variables), before, names=[f"variable{i}" for i in range(9)])


# --- Dense (1-5) ---------------------------------------------------------------------------------

def test_1_var_m_v_shapes_differ():
  var, m, v = _variables(np.ones(3), np.zeros(4), np.zeros(3))
  assert_rejected(lambda: _apply(var, m, v, tf.ones(3)), [var, m, v], errors.InvalidArgumentError,
                  r"var and m do not have the same shape: \[3\] vs \[4\]")


def test_1_var_m_v_shapes_differ_at_graph_build():
  with tf.Graph().as_default():
    var, m, v = (tf.compat.v1.Variable(np.zeros(s, np.float32), use_resource=False)
                 for s in (3, 4, 3))
    with pytest.raises(ValueError, match=r"\[3\].*\[4\]"):
      ops.apply_adam_v1(var, m, v, *SCALARS.values(), np.ones(3, np.float32))


def test_2_grad_same_count_other_shape():
  var, m, v = _variables(np.ones((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)))
  assert_rejected(lambda: _apply(var, m, v, tf.ones((2, 3))), [var, m, v],
                  errors.InvalidArgumentError, r"var and grad .*\[3,2\] vs \[2,3\]")


def test_3_grad_of_another_rank():
  var, m, v = _variables(np.ones(6), np.zeros(6), np.zeros(6))
  assert_rejected(lambda: _apply(var, m, v, tf.ones((2, 3))), [var, m, v],
                  errors.InvalidArgumentError, r"\[6\] vs \[2,3\]")


@pytest.mark.parametrize("shape", [(0,), (0, 5)])
def test_4_zero_size_tensors_are_fine(shape):
  var, m, v = _variables(*(np.zeros(shape),) * 3)
  _apply(var, m, v, tf.zeros(shape))
  assert var.shape == shape
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    ref_vars = [tf.compat.v1.Variable(np.zeros(shape, np.float32), use_resource=False)
                for _ in range(3)]
    update = ops.apply_adam_v1(*ref_vars, *SCALARS.values(), np.zeros(shape, np.float32))
    session.run(tf.compat.v1.global_variables_initializer())
    assert session.run(update).shape == shape


# --- Hyperparameters (6-12) ----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [[1], [2], [0]], ids=["[1]", "[2]", "[0]"])
@pytest.mark.parametrize("name", list(SCALARS))
def test_6_non_scalar_hyperparameter(name, shape):
  var, m, v = _variables(np.ones(3), np.zeros(3), np.zeros(3))
  bad = tf.fill(shape, tf.constant(SCALARS[name], tf.float32))
  assert_rejected(lambda: _apply(var, m, v, tf.ones(3), **{name: bad}), [var, m, v],
                  errors.InvalidArgumentError, f"{name} is not a scalar")
  with tf.Graph().as_default():  # the shape function rejects it when the graph is built
    ref_vars = [tf.compat.v1.Variable(np.zeros(3, np.float32), use_resource=False) for _ in "xyz"]
    scalars = dict(SCALARS, **{name: tf.fill(shape, tf.constant(0.5))})
    with pytest.raises(ValueError, match="must be rank 0"):
      ops.apply_adam_v1(*ref_vars, *scalars.values(), np.ones(3, np.float32))


def test_7_hyperparameter_dtype_differs_from_compute_dtype():
  var, m, v = _variables(np.ones(3), np.zeros(3), np.zeros(3))
  assert_rejected(lambda: _apply(var, m, v, tf.ones(3), lr=tf.constant(0.01, tf.float64)),
                  [var, m, v], TypeError, "lr has dtype float64.*float32 hyperparameters")


def test_7_raw_kernel_rejects_hyperparameter_dtype():
  """Without our wrapper (tf.raw_ops), the kernel itself refuses float64 scalars for float32."""
  var, m, v = _variables(np.ones(3), np.zeros(3), np.zeros(3))
  scalars = {k: tf.constant(x, tf.float64) for k, x in SCALARS.items()}
  assert_rejected(lambda: tf_adam_op.load().ResourceApplyAdamV1(
      var=var.handle, m=m.handle, v=v.handle, grad=tf.ones(3), vhat=[], weight_decay=[],
      one_minus_beta=[], **scalars), [var, m, v],
                  errors.InvalidArgumentError, "must be float")


def test_8_resource_dtype_differs_from_T():
  var = tf.Variable(np.ones(3, np.float64))  # stock's kernel aborts the process here
  m, v = _variables(np.zeros(3), np.zeros(3))
  assert_rejected(lambda: _apply(var, m, v, tf.ones(3)), [var, m, v], errors.InvalidArgumentError,
                  "var is a variable of dtype double but the op updates float")


def test_9_nan_and_inf_gradients_propagate_deterministically():
  grad = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0], np.float32)
  results = []
  for _ in range(2):
    var, m, v = _variables(np.ones(5), np.zeros(5), np.zeros(5))
    _apply(var, m, v, grad)
    results.append(_snapshot([var, m, v]))
  expected = adam_step(np.ones(5, np.float32), np.zeros(5, np.float32), np.zeros(5, np.float32),
                       grad, *SCALARS.values())
  assert_bitwise_equal(results[0], expected)
  assert_bitwise_equal(results[1], results[0])


def test_10_beta1_power_of_one_gives_documented_inf_nan():
  """alpha = lr * sqrt(1 - beta2_power) / 0: inf, so var becomes +-inf or NaN, as stock."""
  var, m, v = _variables(np.ones(3), np.zeros(3), np.zeros(3))
  grad = np.array([1.0, 0.0, -1.0], np.float32)
  _apply(var, m, v, grad, beta1_power=1.0)
  expected = adam_step(np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32),
                       grad, **dict(SCALARS, beta1_power=1.0))
  assert_bitwise_equal(_snapshot([var, m, v]), expected)
  assert not np.all(np.isfinite(var.numpy()))


@pytest.mark.parametrize("kwargs", [
    # beta = 1.0 is legal, as in stock (it freezes the beta powers): see test_hyperparameter_types.
    dict(beta1=1.0001), dict(beta1=-0.1), dict(beta2=-1), dict(beta2=1.5), dict(epsilon=-1e-8),
    dict(learning_rate=-0.1), dict(beta1=float("nan")),
])
def test_11_constructor_rejects_out_of_range_numbers(kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    tf_adam_op.AdamOptimizer(**kwargs)


def test_11_callable_out_of_range_is_rejected_when_known():
  var = tf.Variable([1.0, 2.0])
  opt = tf_adam_op.AdamOptimizer(beta2=lambda: 1.5)
  assert_rejected(lambda: opt.apply_gradients([(tf.constant([0.1, 0.1]), var)]), [var], ValueError,
                  "beta2")


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "IndexedSlices"])
def test_12_gradient_of_another_dtype_than_its_variable(sparse, mode):
  """Stock's dense kernel aborts the process on a float64 gradient for a float32 variable; ours is
  an InvalidArgumentError naming the gradient and both dtypes, with nothing changed."""
  var, other = tf.Variable(tf.ones([4, 2])), tf.Variable(tf.ones([3]))
  grad = (tf.IndexedSlices(tf.ones([1, 2], tf.float64), tf.constant([1]), tf.constant([4, 2]))
          if sparse else tf.ones([4, 2], tf.float64))
  opt = tf_adam_op.AdamOptimizer(0.1)
  def step():
    opt.apply_gradients([(tf.ones([3]), other), (grad, var)])
  if mode == "tf.function":
    step = tf.function(step)
  kind = "IndexedSlices gradient" if sparse else "gradient"
  assert_rejected(step, [var, other], errors.InvalidArgumentError,
                  f"{kind}.*'Variable.*has dtype float64, but the variable is float32")


def test_12_integer_variable():
  var = tf.Variable([1, 2, 3])
  with pytest.raises(ValueError, match="int32"):
    tf_adam_op.AdamOptimizer().apply_gradients([(tf.constant([1, 1, 1]), var)])
  m, v = tf.Variable([0, 0, 0]), tf.Variable([0, 0, 0])
  # No kernel is registered for integers. TF 2.21 reports a missing kernel as InvalidArgument
  # (older TF: NotFound), for stock's ApplyAdam as for ours.
  assert_rejected(lambda: ops.resource_apply_adam_v1(
      var.handle, m.handle, v.handle, *SCALARS.values(), tf.constant([1, 1, 1])), [var, m, v],
                  (errors.NotFoundError, errors.InvalidArgumentError), "No OpKernel was registered")


# --- Variables and handles (22-26) ---------------------------------------------------------------

@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
def test_22_uninitialized_variable(use_resource):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v = (tf.compat.v1.Variable(np.full(3, i, np.float32), use_resource=use_resource)
                 for i in range(3))
    grad = np.ones(3, np.float32)
    if use_resource:
      update = ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(), grad)
    else:
      update = ops.apply_adam_v1(var, m, v, *SCALARS.values(), grad)
    session.run([m.initializer, v.initializer])  # var is left uninitialized
    with pytest.raises(errors.FailedPreconditionError, match="uninitialized"):
      session.run(update)
    assert_bitwise_equal(session.run([m, v]), [np.full(3, 1, np.float32), np.full(3, 2, np.float32)])


def test_23_wrong_dtype_handle():
  m, v = _variables(np.zeros(3), np.zeros(3))
  with pytest.raises((TypeError, errors.InvalidArgumentError)):
    ops.resource_apply_adam_v1(tf.constant(1), m.handle, v.handle, *SCALARS.values(), tf.ones(3))
  with tf.Graph().as_default():
    with pytest.raises(TypeError):
      ops.resource_apply_adam_v1(tf.constant(1), tf.constant(2), tf.constant(3), *SCALARS.values(),
                                 np.ones(3, np.float32))


def test_23_non_scalar_handle():
  var, m, v = _variables(np.ones(3), np.zeros(3), np.zeros(3))
  handles = tf.stack([var.handle, m.handle])
  assert_rejected(lambda: ops.resource_apply_adam_v1(
      handles, m.handle, v.handle, *SCALARS.values(), tf.ones(3)), [var, m, v],
                  errors.InvalidArgumentError, "scalar resource handle")


def test_24_deleted_variable():
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v = (tf.compat.v1.Variable(np.zeros(3, np.float32), use_resource=True) for _ in "xyz")
    update = ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(),
                                        np.ones(3, np.float32))
    session.run(tf.compat.v1.global_variables_initializer())
    session.run(tf.raw_ops.DestroyResourceOp(resource=var.handle))
    with pytest.raises(errors.FailedPreconditionError, match="deleted"):
      session.run(update)
    assert_bitwise_equal(session.run([m, v]), [np.zeros(3, np.float32)] * 2)


def test_24_resource_that_is_not_a_variable():
  table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=0.0)
  m, v = _variables(np.zeros(3), np.zeros(3))
  assert_rejected(lambda: ops.resource_apply_adam_v1(
      table.resource_handle, m.handle, v.handle, *SCALARS.values(), tf.ones(3)), [m, v],
                  errors.InvalidArgumentError)


def test_25_same_variable_as_var_and_m_resource():
  var, v = _variables(np.ones(3), np.zeros(3))
  assert_rejected(lambda: ops.resource_apply_adam_v1(
      var.handle, var.handle, v.handle, *SCALARS.values(), tf.ones(3)), [var, v],
                  errors.InvalidArgumentError, "var and m are the same variable")


@pytest.mark.parametrize("use_locking", [False, True])
def test_25_same_variable_as_var_and_m_ref(use_locking):
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, v = (tf.compat.v1.Variable(np.ones(3, np.float32), use_resource=False) for _ in "xy")
    update = ops.apply_adam_v1(var, var, v, *SCALARS.values(), np.ones(3, np.float32),
                               use_locking=use_locking)
    session.run(tf.compat.v1.global_variables_initializer())
    with pytest.raises(errors.InvalidArgumentError, match="same variable"):
      session.run(update)
    assert_bitwise_equal(session.run([var, v]), [np.ones(3, np.float32)] * 2)


def test_26_read_value_snapshot_is_not_changed_by_the_update():
  var, m, v = _variables(np.ones(4), np.zeros(4), np.zeros(4))
  snapshot = var.read_value()
  _apply(var, m, v, tf.ones(4))
  np.testing.assert_array_equal(snapshot.numpy(), np.ones(4, np.float32))
  assert not np.array_equal(var.numpy(), np.ones(4, np.float32))


def test_26_read_value_snapshot_inside_tf_function():
  var, m, v = _variables(np.ones(4), np.zeros(4), np.zeros(4))

  @tf.function
  def read_then_update():
    snapshot = var.read_value()
    with tf.control_dependencies([snapshot]):
      _apply(var, m, v, tf.ones(4))
    return tf.identity(snapshot)

  np.testing.assert_array_equal(read_then_update().numpy(), np.ones(4, np.float32))
  assert not np.array_equal(var.numpy(), np.ones(4, np.float32))
