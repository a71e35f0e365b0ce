"""tf_adam_op.AdamOptimizer against stock tf.compat.v1.train.AdamOptimizer, bit for bit, in every mode:
eager (float and callable hyperparameters), tf.function, TF1 sessions with ref and resource
variables, a decayed tensor learning rate with global_step, and one optimizer across graphs."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal, optimizer_state, random_grads
from numpy_reference import BFLOAT16, AdamReference

STEPS = 25
FLOAT_DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def _numpy(values):
  return [x.numpy() if hasattr(x, "numpy") else x for x in values]


def _eager_run(optimizer_cls, init, grads, **kwargs):
  var = tf.Variable(init)
  opt = optimizer_cls(**kwargs)
  for grad in grads:
    assert opt.apply_gradients([(tf.constant(grad), var)]) is None  # eager returns None, as stock
  return _numpy(optimizer_state(opt, var))


@FLOAT_DTYPES
def test_eager_float_hyperparameters(rng, dtype):
  init = rng.standard_normal((31, 7)).astype(dtype)
  grads = random_grads(rng, init.shape, dtype, STEPS)
  kwargs = dict(learning_rate=0.02, beta1=0.8, beta2=0.99, epsilon=1e-7)
  results = {name: _eager_run(cls, init, grads, **kwargs) for name, cls in OPTIMIZERS.items()}
  assert_bitwise_equal(results["ours"], results["stock"])


@FLOAT_DTYPES
def test_eager_callables_are_reevaluated_every_step(rng, dtype):
  init = rng.standard_normal(100).astype(dtype)
  grads = random_grads(rng, init.shape, dtype, STEPS)
  results = {}
  for name, cls in OPTIMIZERS.items():
    step = [0]
    var = tf.Variable(init)
    opt = cls(learning_rate=lambda: 0.05 * 0.9**step[0], beta1=lambda: 0.9, epsilon=lambda: 1e-6)
    for grad in grads:
      opt.apply_gradients([(tf.constant(grad), var)])
      step[0] += 1
    results[name] = _numpy(optimizer_state(opt, var))
  assert_bitwise_equal(results["ours"], results["stock"])
  # The callable really was re-read: a constant learning rate gives another trajectory.
  constant = _eager_run(OPTIMIZERS["ours"], init, grads, learning_rate=0.05, epsilon=1e-6)
  assert not np.array_equal(constant[0], results["ours"][0])


@FLOAT_DTYPES
def test_tf_function_with_live_variable_learning_rate(rng, dtype):
  init = rng.standard_normal((16, 4)).astype(dtype)
  grads = random_grads(rng, init.shape, dtype, STEPS)
  results, tracing_counts = {}, {}
  for name, cls in OPTIMIZERS.items():
    var = tf.Variable(init)
    lr = tf.Variable(0.01, dtype=tf.float32)
    opt = cls(learning_rate=lambda: lr)  # evaluated at trace time: reads the variable, stays live

    @tf.function
    def train_step(grad):
      opt.apply_gradients([(grad, var)])  # slots are created on the first trace

    for i, grad in enumerate(grads):
      lr.assign(0.01 / (1 + i))
      train_step(tf.constant(grad))
    tracing_counts[name] = train_step.experimental_get_tracing_count()
    results[name] = _numpy(optimizer_state(opt, var))
  assert_bitwise_equal(results["ours"], results["stock"])
  assert tracing_counts["ours"] == tracing_counts["stock"]  # no retrace per step


def _graph_run(optimizer_cls, data, dtype, use_resource):
  """A linear model trained with minimize(), a decayed tensor learning rate and global_step."""
  x_data, y_data = data
  graph = tf.Graph()
  with graph.as_default():
    w = tf.compat.v1.get_variable("w", initializer=np.full((x_data.shape[1], 1), 0.1, dtype),
                                  use_resource=use_resource)
    b = tf.compat.v1.get_variable("b", initializer=np.zeros(1, dtype), use_resource=use_resource)
    x = tf.compat.v1.placeholder(dtype, x_data.shape)
    y = tf.compat.v1.placeholder(dtype, y_data.shape)
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y))
    global_step = tf.compat.v1.train.get_or_create_global_step()
    lr = tf.compat.v1.train.exponential_decay(0.05, global_step, decay_steps=5, decay_rate=0.7)
    opt = optimizer_cls(learning_rate=lr)
    train_op = opt.minimize(loss, global_step=global_step)
    assert train_op in tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.TRAIN_OP)
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for _ in range(STEPS):
        session.run(train_op, {x: x_data, y: y_data})
      assert session.run(global_step) == STEPS
      return session.run(optimizer_state(opt, w) + optimizer_state(opt, b)[:3])


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
@FLOAT_DTYPES
def test_tf1_session_minimize_with_decayed_learning_rate(rng, dtype, use_resource):
  data = (rng.standard_normal((64, 5)).astype(dtype), rng.standard_normal((64, 1)).astype(dtype))
  results = {name: _graph_run(cls, data, dtype, use_resource) for name, cls in OPTIMIZERS.items()}
  assert_bitwise_equal(results["ours"], results["stock"],
                       names=("w", "w/m", "w/v", "beta1_power", "beta2_power", "b", "b/m", "b/v"))


def test_one_optimizer_across_eager_and_two_graphs(rng):
  init = rng.standard_normal(50).astype(np.float32)
  grads = random_grads(rng, init.shape, np.float32, 12)

  def scenario(cls):
    opt = cls(learning_rate=0.01)
    eager_var = tf.Variable(init)
    for grad in grads[:4]:
      opt.apply_gradients([(tf.constant(grad), eager_var)])
    outputs = []
    for steps in (3, 5):  # two graphs in turn, each with its own variables and beta powers
      with tf.Graph().as_default() as graph:
        var = tf.compat.v1.Variable(init, use_resource=False)
        grad_in = tf.compat.v1.placeholder(tf.float32, init.shape)
        train_op = opt.apply_gradients([(grad_in, var)])
        assert {v.graph for v in opt.variables()} == {graph}  # only this graph's non-slot vars
        with tf.compat.v1.Session(graph=graph) as session:
          session.run(tf.compat.v1.global_variables_initializer())
          for grad in grads[:steps]:
            session.run(train_op, {grad_in: grad})
          outputs += session.run(optimizer_state(opt, var))
    for grad in grads[4:]:  # eager state resumes where it was: nothing leaked from the graphs
      opt.apply_gradients([(tf.constant(grad), eager_var)])
    return outputs + _numpy(optimizer_state(opt, eager_var))

  ours, stock = scenario(OPTIMIZERS["ours"]), scenario(OPTIMIZERS["stock"])
  assert_bitwise_equal(ours, stock, names=[f"{k}:{n}" for k in ("graph1", "graph2", "eager")
                                           for n in ("var", "m", "v", "b1p", "b2p")])


@pytest.mark.parametrize("mode", ["eager", "tf.function", "session-ref", "session-resource"])
def test_sparse_gradients_match_stock(rng, mode):
  table = rng.standard_normal((20, 3)).astype(np.float32)
  batches = [rng.integers(0, 20, size=6) for _ in range(15)]  # with repeated indices
  results = {}
  for name, cls in OPTIMIZERS.items():
    opt = cls(learning_rate=0.05)
    if mode.startswith("session"):
      with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        var = tf.compat.v1.Variable(table, use_resource=mode.endswith("resource"))
        ids = tf.compat.v1.placeholder(tf.int32, [None])
        train_op = opt.minimize(tf.reduce_sum(tf.square(tf.gather(var, ids))))
        session.run(tf.compat.v1.global_variables_initializer())
        for batch in batches:
          session.run(train_op, {ids: batch})
        results[name] = session.run(optimizer_state(opt, var))
      continue
    var = tf.Variable(table)

    def step(ids):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(tf.gather(var, ids)))
      grad = tape.gradient(loss, var)
      assert isinstance(grad, tf.IndexedSlices)
      opt.apply_gradients([(grad, var)])

    step_fn = tf.function(step) if mode == "tf.function" else step
    for batch in batches:
      step_fn(tf.constant(batch, tf.int32))
    results[name] = _numpy(optimizer_state(opt, var))
  assert_bitwise_equal(results["ours"], results["stock"])


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=["float16", "bfloat16"])
def test_low_precision_follows_float32_compute_reference(rng, dtype):
  """Half and bfloat16 are computed in float32 with float32 hyperparameters, rounded once."""
  init = rng.standard_normal(257).astype(dtype)
  grads = random_grads(rng, init.shape, dtype, STEPS)
  grads[3][:10] = 0  # a zero gradient must not produce NaN (epsilon = 1e-8 survives)
  reference = AdamReference(init)
  for grad in grads:
    reference.step(grad)
  ours = _eager_run(OPTIMIZERS["ours"], init, grads)
  assert_bitwise_equal(ours[:3], [reference.var, reference.m, reference.v])
  assert np.all(np.isfinite(ours[0].astype(np.float32)))
  assert np.all(ours[2].astype(np.float32) > 0)  # v grows: beta2 = 0.999 did not round to 1.0


def test_optimizer_api_matches_stock():
  ours, stock = OPTIMIZERS["ours"](), OPTIMIZERS["stock"]()
  assert isinstance(ours, tf.compat.v1.train.Optimizer)
  assert ours.get_name() == stock.get_name() == "Adam"
  var = tf.Variable([1.0, 2.0])
  for opt in (ours, stock):
    opt.apply_gradients([(tf.constant([0.1, 0.2]), var)])
  assert ours.get_slot_names() == stock.get_slot_names() == ["m", "v"]
  assert [(v.dtype, v.shape) for v in ours.variables()] == [
      (v.dtype, v.shape) for v in stock.variables()]
  with pytest.raises(ValueError):
    OPTIMIZERS["ours"](name="")
