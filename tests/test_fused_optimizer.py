"""AdamOptimizer's multi-tensor grouping and eager fast path against stock, bit for bit: mixed
dtypes, mixed devices, ref + resource + sparse in one step, constraints, None gradients,
global_step, changing variable lists, fused=False, and the ops the graph really contains."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal, optimizer_state
import tf_adam_op

STEPS = 6
MODES = ["eager", "tf.function", "session"]


def _state_values(opt, variables, session=None):
  tensors = [t for var in variables for t in optimizer_state(opt, var)[:3]]
  tensors += list(opt._get_beta_accumulators())
  if session is not None:
    return session.run(tensors)
  return [t.numpy() for t in tensors]


def _train(cls, mode, make_variables, grads_for_step, steps=STEPS, **kwargs):
  """Runs `steps` apply_gradients over make_variables() in `mode`; returns every state tensor."""
  opt = cls(learning_rate=0.03, **kwargs)
  if mode == "session":
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
      variables = make_variables(graph=True)
      step_input = tf.compat.v1.placeholder(tf.int32, [])
      train_op = opt.apply_gradients(grads_for_step(step_input, variables))
      session.run(tf.compat.v1.global_variables_initializer())
      for step in range(steps):
        session.run(train_op, {step_input: step})
      return _state_values(opt, variables, session), session.graph
  variables = make_variables(graph=False)
  def apply(step):
    opt.apply_gradients(grads_for_step(step, variables))
  if mode == "tf.function":
    apply = tf.function(apply)
  for step in range(steps):
    apply(tf.constant(step))
  return _state_values(opt, variables), None


def _dense_grads(step, variables):
  """A deterministic gradient per variable and step, in the variable's dtype."""
  scale = tf.cast(step + 1, tf.float64)
  return [(tf.cast(tf.sin(tf.cast(tf.reshape(tf.range(tf.size(v)), v.shape), tf.float64) * scale
                          + i), v.dtype.base_dtype), v) for i, v in enumerate(variables)]


def _compare(mode, make_variables, grads_for_step=_dense_grads, **kwargs):
  ours, graph = _train(OPTIMIZERS["ours"], mode, make_variables, grads_for_step, **kwargs)
  stock, _ = _train(OPTIMIZERS["stock"], mode, make_variables, grads_for_step)
  assert_bitwise_equal(ours, stock, names=[f"state[{i}]" for i in range(len(ours))])
  return graph


def _op_types(graph):
  return [op.type for op in graph.get_operations()]


def _variables_factory(specs):
  """specs: [(shape, dtype, device or None)] -> make_variables(graph)."""
  def make(graph):
    variables = []
    for i, (shape, dtype, device) in enumerate(specs):
      init = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float64).reshape(shape).astype(dtype)
      with tf.device(device):
        variables.append(tf.compat.v1.Variable(init, name=f"w{i}", use_resource=True) if graph
                         else tf.Variable(init, name=f"w{i}"))
    return variables
  return make


@pytest.mark.parametrize("mode", MODES)
def test_one_group_is_one_op_that_also_advances_the_powers(mode):
  specs = [((0,), np.float32, None), ((1,), np.float32, None), ((7, 3), np.float32, None),
           ((1025,), np.float32, None)]
  graph = _compare(mode, _variables_factory(specs))
  if graph is not None:
    types = _op_types(graph)
    assert types.count("ResourceApplyAdamV1Multi") == 1
    assert "ResourceApplyAdam" not in types and "ResourceApplyAdamV1" not in types
    assert "AssignVariableOp" not in [t for t in types if t.startswith("Assign") and
                                      "Adam" in t]  # the powers are advanced inside the op


@pytest.mark.parametrize("mode", MODES)
def test_mixed_dtypes_make_one_group_each(mode):
  specs = [((5,), np.float32, None), ((3, 2), np.float64, None), ((9,), np.float32, None),
           ((4,), np.float64, None)]
  graph = _compare(mode, _variables_factory(specs))
  if graph is not None:
    assert _op_types(graph).count("ResourceApplyAdamV1MultiNoAdvance") == 2


@pytest.mark.parametrize("mode", MODES)
def test_mixed_devices_make_one_group_each(mode):
  assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest sets up two logical CPUs"
  specs = [((5,), np.float32, "/cpu:0"), ((6,), np.float32, "/cpu:1"),
           ((7,), np.float32, "/cpu:0"), ((8,), np.float32, "/cpu:1")]
  graph = _compare(mode, _variables_factory(specs))
  if graph is not None:
    assert _op_types(graph).count("ResourceApplyAdamV1MultiNoAdvance") == 2


def test_ref_resource_and_sparse_in_one_session_step():
  def make(graph):
    return [tf.compat.v1.Variable(np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3),
                                  name=f"w{i}", use_resource=kind)
            for i, kind in enumerate((False, True, True, True))]

  def grads(step, variables):
    scale = tf.cast(step + 1, tf.float32)
    dense = [tf.ones((4, 3)) * scale * (i + 1) for i in range(3)]
    sparse = tf.IndexedSlices(tf.ones((3, 3)) * scale, tf.constant([0, 2, 0]),
                              tf.constant([4, 3]))
    return list(zip(dense + [sparse], variables))

  graph = _compare("session", make, grads)
  types = _op_types(graph)
  assert types.count("ApplyAdamV1") == 1  # the ref variable keeps its own op
  assert types.count("ResourceApplyAdamV1MultiNoAdvance") == 1  # two dense resource variables
  assert types.count("ResourceSparseApplyAdamV1") == 1


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_constrained_variable_is_updated_before_its_constraint(mode):
  def make(graph):
    return [tf.Variable(np.linspace(-2, 2, 8, dtype=np.float32), name="w0",
                        constraint=lambda x: tf.clip_by_value(x, -1.0, 1.0)),
            tf.Variable(np.linspace(-2, 2, 8, dtype=np.float32), name="w1")]
  _compare(mode, make)


def test_eager_none_gradients_global_step_and_changing_variable_lists():
  results = {}
  for name, cls in OPTIMIZERS.items():
    opt = cls(learning_rate=0.05)
    variables = [tf.Variable(np.full(5, float(i), np.float32)) for i in range(4)]
    global_step = tf.Variable(0, dtype=tf.int64)
    for step in range(8):
      grads = [tf.fill([5], float(step + i)) for i in range(4)]
      if step % 2:
        grads[1] = None  # skipped, as stock skips it
      pairs = list(zip(grads, variables))
      if step % 3 == 2:
        pairs = pairs[2:]  # another variable list: the cached plan must not be reused
      opt.apply_gradients(pairs, global_step=global_step)
    assert global_step.numpy() == 8
    results[name] = _state_values(opt, variables)
  assert_bitwise_equal(results["ours"], results["stock"],
                       names=[f"state[{i}]" for i in range(len(results["ours"]))])


def test_eager_errors_are_stocks():
  for cls in OPTIMIZERS.values():
    var = tf.Variable([1.0, 2.0])
    opt = cls()
    opt.apply_gradients([(tf.constant([1.0, 1.0]), var)])  # builds (ours: caches) the plan
    with pytest.raises(ValueError, match="No gradients provided"):
      opt.apply_gradients([(None, var)])
    with pytest.raises(ValueError, match="No variables provided"):
      opt.apply_gradients([])
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
      opt.apply_gradients([(tf.constant([1.0, 1.0, 1.0]), var)])
    np.testing.assert_array_equal(var.numpy()[:0], [])  # still readable


def test_eager_gradient_of_another_dtype_is_an_error_not_a_crash():
  # Stock aborts the process here (a CHECK failure in its kernel: "double expected, got float").
  var = tf.Variable([1.0, 2.0])
  opt = tf_adam_op.AdamOptimizer()
  opt.apply_gradients([(tf.constant([1.0, 1.0]), var)])
  before = _state_values(opt, [var])
  with pytest.raises((TypeError, tf.errors.InvalidArgumentError), match="dtype"):
    opt.apply_gradients([(tf.constant([1.0, 1.0], tf.float64), var)])
  assert_bitwise_equal(_state_values(opt, [var]), before)


def test_eager_bad_gradient_among_many_changes_nothing():
  variables = [tf.Variable(np.full(3, float(i), np.float32)) for i in range(5)]
  opt = tf_adam_op.AdamOptimizer()
  opt.apply_gradients([(tf.ones(3), v) for v in variables])
  before = _state_values(opt, variables)
  grads = [tf.ones(3)] * 4 + [tf.ones(4)]  # the last one has the wrong shape
  with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
    opt.apply_gradients(list(zip(grads, variables)))
  assert_bitwise_equal(_state_values(opt, variables), before,
                       names=[f"state[{i}]" for i in range(len(before))])


@pytest.mark.parametrize("mode", MODES)
def test_fused_false_gives_the_same_numbers_with_one_op_per_variable(mode):
  specs = [((5,), np.float32, None), ((3, 2), np.float32, None)]
  graph = _compare(mode, _variables_factory(specs), fused=False)
  if graph is not None:
    types = _op_types(graph)
    assert types.count("ResourceApplyAdamV1") == 2
    assert not [t for t in types if t.startswith("ResourceApplyAdamV1Multi")]
