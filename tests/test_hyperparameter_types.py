"""Hyperparameters of every type and dtype stock accepts train, in every mode, with stock's numbers:
NumPy scalars, Python ints, float64 tensors, beta = 1.0 (which TF's own tests use to freeze the beta
powers). The beta power accumulators take the dtype stock gives them (the dtype of beta1/beta2)."""

import numpy as np
import pytest
import tensorflow as tf

import tf_adam_op
from helpers import OPTIMIZERS, assert_bitwise_equal

STEPS = 4

# name -> a function returning the constructor's keyword arguments (called where the optimizer is
# built: a tensor must be made in the graph it is used in).
HYPERPARAMETERS = {
    "beta1=np.float64": lambda: dict(beta1=np.float64(0.9)),
    "beta2=np.float64": lambda: dict(beta2=np.float64(0.999)),
    "both betas np.float64": lambda: dict(beta1=np.float64(0.8), beta2=np.float64(0.99)),
    "beta1=0 (int)": lambda: dict(beta1=0),
    "beta1=float64 tensor": lambda: dict(beta1=tf.constant(0.9, tf.float64)),
    "beta1=1.0, beta2=1.0": lambda: dict(beta1=1.0, beta2=1.0),
    "beta1=np.float32": lambda: dict(beta1=np.float32(0.85)),
    "learning_rate=np.float64": lambda: dict(learning_rate=np.float64(0.01)),
    "learning_rate=1 (int)": lambda: dict(learning_rate=1),
    "learning_rate=float64 tensor": lambda: dict(learning_rate=tf.constant(0.02, tf.float64)),
    "epsilon=np.float64": lambda: dict(epsilon=np.float64(1e-6)),
}


def _grads(dtype, sparse):
  rng = np.random.default_rng(7)
  dense = [rng.standard_normal([6, 3]).astype(dtype) for _ in range(STEPS)]
  rows = [tf.IndexedSlices(rng.standard_normal([2, 3]).astype(dtype), np.array([0, 4]),
                           np.array([6, 3])) for _ in range(STEPS)] if sparse else None
  return dense, rows


def _not_constant(x):
  """x, as a tensor grappler cannot constant-fold (a constant sparse gradient is another issue's
  case, see test_sparse_constant_folding.py)."""
  x = tf.convert_to_tensor(x)
  return tf.raw_ops.PlaceholderWithDefault(input=x, shape=x.shape)


def _pairs(step, dense, rows, w, e):
  pairs = [(_not_constant(dense[step]), w)]
  if rows is not None:
    pairs.append((tf.IndexedSlices(_not_constant(rows[step].values),
                                   _not_constant(rows[step].indices),
                                   tf.constant(rows[step].dense_shape)), e))
  return pairs


def _state(opt, variables):
  return [[v, opt.get_slot(v, "m"), opt.get_slot(v, "v"), *opt._get_beta_accumulators()]
          for v in variables]


def _run_eager(cls, kwargs, dtype, sparse, in_function):
  dense, rows = _grads(dtype, sparse)
  w = tf.Variable(np.linspace(-1, 1, 18).reshape(6, 3).astype(dtype))
  e = tf.Variable(np.linspace(1, 2, 18).reshape(6, 3).astype(dtype))
  opt = cls(**kwargs())
  def apply(pairs):
    opt.apply_gradients(pairs)
  if in_function:
    apply = tf.function(apply)
  for step in range(STEPS):
    apply(_pairs(step, dense, rows, w, e))
  return [[np.asarray(x) for x in s] for s in _state(opt, [w, e] if sparse else [w])]


def _run_graph(cls, kwargs, dtype, sparse):
  dense, rows = _grads(dtype, sparse)
  with tf.Graph().as_default():
    w = tf.compat.v1.get_variable("w", initializer=np.linspace(-1, 1, 18).reshape(6, 3).astype(dtype),
                                  use_resource=True)
    e = tf.compat.v1.get_variable("e", initializer=np.linspace(1, 2, 18).reshape(6, 3).astype(dtype),
                                  use_resource=True)
    opt = cls(**kwargs())
    train = [opt.apply_gradients(_pairs(step, dense, rows, w, e)) for step in range(STEPS)]
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for op in train:
        sess.run(op)
      return sess.run(_state(opt, [w, e] if sparse else [w]))


def _run(mode, cls, kwargs, dtype, sparse):
  if mode == "tf1-graph":
    return _run_graph(cls, kwargs, dtype, sparse)
  return _run_eager(cls, kwargs, dtype, sparse, in_function=(mode == "tf.function"))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "dense+sparse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf1-graph"])
@pytest.mark.parametrize("hyper", list(HYPERPARAMETERS), ids=list(HYPERPARAMETERS))
def test_every_hyperparameter_type_trains_with_stocks_numbers(hyper, mode, dtype, sparse):
  kwargs = HYPERPARAMETERS[hyper]
  expected = _run(mode, OPTIMIZERS["stock"], kwargs, dtype, sparse)
  actual = _run(mode, OPTIMIZERS["ours"], kwargs, dtype, sparse)
  for ours, stock in zip(actual, expected):
    assert_bitwise_equal(ours, stock)


@pytest.mark.parametrize("name, value", [("beta1", -0.1), ("beta1", 1.5), ("beta2", float("nan")),
                                         ("beta2", np.float64(1.0001)), ("beta1", -1)])
def test_betas_outside_zero_one_are_rejected_like_nan(name, value):
  with pytest.raises(ValueError, match=f"{name} must be in \\[0, 1\\]"):
    tf_adam_op.AdamOptimizer(**{name: value})


def test_raw_op_takes_float16_scalars_for_float16_variables_as_stocks_apply_adam_does():
  """A call written for stock's ResourceApplyAdam with float16 variables passes float16 scalars:
  they are widened (exactly) to the float32 the update is computed in."""
  init = np.linspace(-1, 1, 8).astype(np.float16)
  grad = np.linspace(0.5, -0.5, 8).astype(np.float16)
  scalars = dict(beta1_power=0.9, beta2_power=0.999, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-3)

  def step(cast):
    var, m, v = (tf.Variable(init), tf.Variable(np.zeros(8, np.float16)),
                 tf.Variable(np.zeros(8, np.float16)))
    tf_adam_op.ops.resource_apply_adam_v1(
        var.handle, m.handle, v.handle, *(cast(x) for x in scalars.values()), tf.constant(grad))
    return [var.numpy(), m.numpy(), v.numpy()]

  as_half = step(lambda x: tf.constant(x, tf.float16))
  widened = step(lambda x: tf.cast(tf.constant(x, tf.float16), tf.float32))
  for a, b in zip(as_half, widened):
    np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
  with pytest.raises(TypeError, match="lr has dtype float64.*takes float32 \\(or float16\\)"):
    tf_adam_op.ops.resource_apply_adam_v1(
        tf.Variable(init).handle, tf.Variable(init).handle, tf.Variable(init).handle, 0.9, 0.999,
        tf.constant(0.01, tf.float64), 0.9, 0.999, 1e-3, tf.constant(grad))
