"""The ops' XLA kernels (cc/xla): under tf.function(jit_compile=True) every op compiles to one
custom call into the fused CPU loop, so a step gives the bits it gives outside XLA.

Each test checks both that the kernel path was taken (the compiled HLO has our custom call, and no
other path could have compiled the op) and the numbers against the op outside XLA, bit for bit.
The composite path (TF_ADAM_OP_XLA_KERNELS=0, or no XLA kernels in the build) is test_xla_composite.py's.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal
import tf_adam_op
from tf_adam_op import _loader
from tf_adam_op._step import xla as _xla
from tf_adam_op import ops

pytestmark = pytest.mark.skipif(not _loader.xla_kernels()[0],
                                reason=f"XLA kernels: {_loader.xla_kernels()[1]}")

DENSE_TARGET = 'custom_call_target="tf_adam_op_dense_adam"'
SPARSE_TARGET = 'custom_call_target="tf_adam_op_sparse_adam"'
DTYPES = {"float16": np.float16, "bfloat16": tf.bfloat16.as_numpy_dtype, "float32": np.float32,
          "float64": np.float64}
SCALARS = (0.9 ** 3, 0.999 ** 3, 0.01, 0.9, 0.999, 1e-7)  # beta powers, lr, beta1, beta2, epsilon
STEPS = 3


def _hlo(fn, *args):
  return fn.experimental_get_compiler_ir(*args)(stage="hlo")


def _state(dtype, shape, seed, amsgrad=False):
  """var, m, v (and vhat): v and vhat non-negative, as an optimizer keeps them."""
  rng = np.random.default_rng(seed)
  values = [rng.standard_normal(shape), rng.standard_normal(shape) * 0.1,
            np.abs(rng.standard_normal(shape)) * 0.01]
  if amsgrad:
    values.append(np.abs(rng.standard_normal(shape)) * 0.02)
  return [x.astype(dtype) for x in values]


def _grads(dtype, shape, seed):
  rng = np.random.default_rng(seed + 100)
  return [tf.constant(rng.standard_normal(shape).astype(dtype)) for _ in range(STEPS)]


def _twins(values):
  """Two sets of variables with the same values: one for the XLA step, one for the op's."""
  return ([tf.Variable(x) for x in values], [tf.Variable(x) for x in values])


def _run_both(make_call, values, grads):
  """Runs make_call(variables, grad) STEPS times under XLA on one set and outside on the other;
  returns both final states and the XLA step's HLO."""
  xla_vars, op_vars = _twins(values)
  compiled = tf.function(lambda g: [make_call(xla_vars, g), None][1], jit_compile=True)
  hlo = _hlo(compiled, grads[0])
  for g in grads:
    compiled(g)
    make_call(op_vars, g)
  return [v.numpy() for v in xla_vars], [v.numpy() for v in op_vars], hlo


DENSE_VARIANTS = {
    "plain": {},
    "nesterov": {"use_nesterov": True},
    "amsgrad": {"amsgrad": True},
    "decay": {"weight_decay": 0.02},
    "decay_times_lr": {"weight_decay": 0.02, "weight_decay_times_lr": True},
    "one_minus_beta": {"one_minus_beta": (0.1, 0.001)},
}


@pytest.mark.parametrize("variant", DENSE_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_op_under_xla_is_the_op_bit_for_bit(dtype, variant):
  options = dict(DENSE_VARIANTS[variant])
  amsgrad = options.pop("amsgrad", False)
  shape = (300, 200)  # 60,000 elements: sharded over the pool, as outside XLA
  values = _state(DTYPES[dtype], shape, 1, amsgrad)

  def call(variables, grad):
    extra = dict(options, vhat=variables[3].handle) if amsgrad else options
    return ops.resource_apply_adam_v1(*(v.handle for v in variables[:3]), *SCALARS, grad, **extra)

  xla, op, hlo = _run_both(call, values, _grads(DTYPES[dtype], shape, 1))
  assert hlo.count(DENSE_TARGET) == 1
  assert "output_to_operand_aliasing" in hlo  # the update is in place
  assert_bitwise_equal(xla, op, names=("var", "m", "v", "vhat"))
  assert not np.array_equal(xla[0], values[0])


def test_dense_op_under_xla_with_an_empty_variable():
  values = _state(np.float32, (0, 4), 2)
  xla, op, _ = _run_both(
      lambda variables, grad: ops.resource_apply_adam_v1(*(v.handle for v in variables), *SCALARS,
                                                         grad),
      values, _grads(np.float32, (0, 4), 2))
  assert_bitwise_equal(xla, op)


@pytest.mark.parametrize("optimizer", ["v1", "keras"])
def test_a_variable_with_no_rows_refuses_any_index_under_xla(optimizer):
  """XLA drops a custom call whose results are all empty, index check and all: the kernel refuses
  the indices while compiling (stock's XLA step refuses them too), and nothing of the step runs."""
  table, dense = tf.Variable(tf.zeros([0, 4])), tf.Variable(tf.ones([3]))
  grad = tf.IndexedSlices(tf.ones([2, 4]), tf.constant([0, 1]), tf.constant([0, 4]))
  if optimizer == "v1":
    opt = tf_adam_op.AdamOptimizer(0.1)
    def v1_step():
      opt.apply_gradients([(grad, table), (tf.ones(3), dense)])
    step = tf.function(v1_step, jit_compile=True)
  else:
    from tf_adam_op import keras as tk
    opt = tk.Adam(0.1)
    opt.build([table, dense])
    step = tf.function(lambda: opt.apply([grad, tf.ones(3)], [table, dense]), jit_compile=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"no rows \(shape \[0,4\]\)"):
    step()
  assert dense.numpy().tolist() == [1, 1, 1]
  if optimizer == "keras":
    assert int(opt.iterations.numpy()) == 0


SPARSE_VARIANTS = {
    "stock_rule": {},
    "lazy": {"lazy": True},
    "scale_first": {"scale_first": True},
    "v_term": {"v_term": True},
    "dense_rule": {"dense_rule": True, "v_term": True},
    "dense_rule_lazy": {"dense_rule": True, "v_term": True, "lazy": True},
    "amsgrad_decay": {"amsgrad": True, "weight_decay": 0.02},
    "one_minus_beta": {"one_minus_beta": (0.1, 0.001), "weight_decay": 0.02,
                       "weight_decay_times_lr": True},
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_sparse_op_under_xla_is_the_op_bit_for_bit(dtype, variant, index_dtype):
  options = dict(SPARSE_VARIANTS[variant])
  amsgrad = options.pop("amsgrad", False)
  with_v_term = options.pop("v_term", False)
  shape = (4000, 16)  # 64,000 elements: every row decays, sharded
  values = _state(DTYPES[dtype], shape, 3, amsgrad)
  indices = tf.constant([5, 3999, 5, 0, 17, 5], index_dtype)  # duplicates, both ends
  rows = [tf.constant(g.numpy()[:6]) for g in _grads(DTYPES[dtype], shape, 3)]

  def call(variables, grad):
    extra = dict(options)
    if amsgrad:
      extra["vhat"] = variables[3].handle
    if with_v_term:
      extra["v_term"] = grad * grad
    return ops.resource_sparse_apply_adam_v1(*(v.handle for v in variables[:3]), *SCALARS, grad,
                                             indices, **extra)

  xla, op, hlo = _run_both(call, values, rows)
  assert hlo.count(SPARSE_TARGET) == 1
  assert_bitwise_equal(xla, op, names=("var", "m", "v", "vhat"))
  assert not np.array_equal(xla[1][5], values[1][5])  # the named row moved


def test_multi_tensor_op_under_xla_is_the_packed_op_bit_for_bit():
  """Two dtype groups (one op each), AMSGrad and the weight decay, sizes across the sharding
  threshold: the unpacked op under XLA against the packed NoAdvance op outside it."""
  shapes = [(50, 40), (0, 3), (300, 150), (7,)]
  for dtype in (np.float32, np.float64):
    values = [_state(dtype, s, 10 + i, amsgrad=True) for i, s in enumerate(shapes)]
    grads = [_grads(dtype, s, 10 + i) for i, s in enumerate(shapes)]
    xla_vars = [[tf.Variable(x) for x in v] for v in values]
    op_vars = [[tf.Variable(x) for x in v] for v in values]
    options = dict(weight_decay=0.01, weight_decay_times_lr=True)
    lists = lambda variables: [[v[k].handle for v in variables] for k in range(4)]

    @tf.function(jit_compile=True)
    def compiled(step_grads):
      var, m, v, vhat = lists(xla_vars)
      ops.resource_apply_adam_v1_multi_unpacked(var, m, v, *SCALARS, step_grads, vhats=vhat,
                                                **options)

    step_grads = lambda t: [g[t] for g in grads]
    assert _hlo(compiled, step_grads(0)).count(DENSE_TARGET) == 1
    for t in range(STEPS):
      compiled(step_grads(t))
      var, m, v, vhat = lists(op_vars)
      ops.resource_apply_adam_v1_multi_no_advance(var, m, v, *SCALARS, step_grads(t), vhats=vhat,
                                                  **options)
    for a, b in zip(xla_vars, op_vars):
      assert_bitwise_equal([x.numpy() for x in a], [x.numpy() for x in b],
                           names=("var", "m", "v", "vhat"))


def test_the_unpacked_op_outside_xla_is_the_packed_op():
  values = [_state(np.float32, (40, 3), 20 + i) for i in range(3)]
  grads = [tf.constant(np.full((40, 3), 0.5 + i, np.float32)) for i in range(3)]
  a = [[tf.Variable(x) for x in v] for v in values]
  b = [[tf.Variable(x) for x in v] for v in values]
  lists = lambda variables: [[v[k].handle for v in variables] for k in range(3)]
  ops.resource_apply_adam_v1_multi_unpacked(*lists(a), *SCALARS, grads, use_nesterov=True)
  ops.resource_apply_adam_v1_multi_no_advance(*lists(b), *SCALARS, grads, use_nesterov=True)
  for x, y in zip(a, b):
    assert_bitwise_equal([v.numpy() for v in x], [v.numpy() for v in y])


# --- errors: all or nothing ---------------------------------------------------------------------

def _unchanged(variables, values):
  for var, value in zip(variables, values):
    np.testing.assert_array_equal(var.numpy(), value)


def test_a_bad_index_under_xla_is_an_error_naming_it_and_changes_nothing():
  values = _state(np.float32, (10, 4), 30)
  variables = [tf.Variable(x) for x in values]

  @tf.function(jit_compile=True)
  def step(indices):
    ops.resource_sparse_apply_adam_v1(*(v.handle for v in variables), *SCALARS,
                                      tf.ones((3, 4)), indices)

  with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[2\] = 10 is not in \[0, 10\)"):
    step(tf.constant([1, 2, 10]))
  _unchanged(variables, values)
  step(tf.constant([1, 2, 9]))  # the same compiled step runs with good indices
  assert not np.array_equal(variables[0].numpy(), values[0])


@pytest.mark.parametrize("case", ["grad_shape", "same_variable", "not_scalar", "scalar_dtype"])
def test_a_bad_multi_tensor_step_under_xla_fails_to_compile_and_changes_nothing(case):
  values = [_state(np.float32, (6, 2), 40 + i) for i in range(2)]
  variables = [[tf.Variable(x) for x in v] for v in values]
  handles = [[v[k].handle for v in variables] for k in range(3)]
  grads = [tf.ones((6, 2)), tf.ones((6, 2))]
  scalars = list(SCALARS)
  # Shape inference catches what the graph's shapes show; the XLA kernel what they cannot.
  expected = {"grad_shape": "Dimension 0 in both shapes must be equal",
              "same_variable": r"vars\[0\] and ms\[1\] are the same variable",
              "not_scalar": "Shape must be rank 0",
              "scalar_dtype": "float"}[case]
  if case == "grad_shape":
    grads[1] = tf.ones((4, 2))
  elif case == "same_variable":
    handles[1][1] = handles[0][0]
  elif case == "not_scalar":
    scalars[2] = tf.constant([0.01, 0.01])

  @tf.function(jit_compile=True)
  def step():
    if case == "scalar_dtype":
      ops._op_library.resource_apply_adam_v1_multi_unpacked(
          *handles, *(tf.constant(s, tf.float64) for s in scalars), grads, vhats=[],
          weight_decay=[], one_minus_beta=[])
    else:
      ops.resource_apply_adam_v1_multi_unpacked(*handles, *scalars, grads)

  with pytest.raises((tf.errors.InvalidArgumentError, ValueError, TypeError), match=expected):
    step()
  for v, value in zip(variables, values):
    _unchanged(v, value)


# --- the optimizers under XLA ---------------------------------------------------------------------

def _train_v1(make_opt, jit_compile, dtypes=(np.float32, np.float64, np.float16), sparse=False):
  """A step over variables of several dtypes (one multi-tensor op per dtype group) and, with
  `sparse`, an embedding-like gather (IndexedSlices)."""
  rng = np.random.default_rng(50)
  variables = [tf.Variable(rng.standard_normal((40, 8)).astype(d)) for d in dtypes]
  opt = make_opt()

  def step(scale):
    with tf.GradientTape() as tape:
      terms = []
      for i, var in enumerate(variables):
        rows = tf.gather(var, [1, 4, 1, 39]) if sparse and i == 0 else var
        terms.append(tf.reduce_sum(tf.cast(tf.square(rows), tf.float64)) * tf.cast(scale + i,
                                                                                     tf.float64))
      loss = tf.add_n(terms)
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

  run = tf.function(step, jit_compile=True) if jit_compile == "xla" else (
      tf.function(step) if jit_compile == "function" else step)
  for t in range(STEPS):
    run(tf.constant(1.0 + t, tf.float64))
  state = [v.numpy() for v in variables]
  state += [opt.get_slot(v, s).numpy() for v in variables for s in opt.get_slot_names()]
  return state + [p.numpy() for p in opt._get_beta_accumulators()], run


V1_OPTIMIZERS = {
    "adam": lambda: tf_adam_op.AdamOptimizer(0.05),
    "amsgrad": lambda: tf_adam_op.AdamOptimizer(0.05, amsgrad=True),
    "adamw": lambda: tf_adam_op.AdamWOptimizer(0.01, 0.05),
    "unfused": lambda: tf_adam_op.AdamOptimizer(0.05, fused=False),
}


@pytest.mark.parametrize("name", V1_OPTIMIZERS)
def test_v1_optimizer_under_xla_is_its_tf_function_step_bit_for_bit(name):
  xla, run = _train_v1(V1_OPTIMIZERS[name], "xla")
  function, _ = _train_v1(V1_OPTIMIZERS[name], "function")
  assert_bitwise_equal(xla, function, names=[f"state[{i}]" for i in range(len(xla))])
  hlo = _hlo(run, tf.constant(1.0, tf.float64))
  # fused: one multi-tensor op per dtype group; unfused: one op per variable
  assert hlo.count(DENSE_TARGET) == 3
  assert 'op_type="ResourceApplyAdam"' not in hlo  # not stock's kernel


def test_v1_adam_under_xla_is_stock_without_xla_bit_for_bit():
  ours, _ = _train_v1(OPTIMIZERS["ours"], "xla", dtypes=(np.float32, np.float64))
  stock, _ = _train_v1(OPTIMIZERS["stock"], "function", dtypes=(np.float32, np.float64))
  assert_bitwise_equal(ours, stock, names=[f"state[{i}]" for i in range(len(ours))])


@pytest.mark.parametrize("lazy", [False, True], ids=["stock_rule", "lazy"])
def test_v1_sparse_under_xla_is_the_eager_step_bit_for_bit(lazy):
  """A sparse step's v term is stock's (g * g) * (1 - beta2) as eager runs it: under XLA no
  grappler rewrites it (the tf.function step follows grappler's order, test_sparse.py)."""
  make = lambda: tf_adam_op.AdamOptimizer(0.05, lazy=lazy)
  xla, run = _train_v1(make, "xla", dtypes=(np.float32,), sparse=True)
  eager, _ = _train_v1(make, "eager", dtypes=(np.float32,), sparse=True)
  assert_bitwise_equal(xla, eager, names=[f"state[{i}]" for i in range(len(xla))])
  assert _hlo(run, tf.constant(1.0, tf.float64)).count(SPARSE_TARGET) == 1


@pytest.mark.parametrize("name", ["adam", "amsgrad", "adamw"])
def test_a_v1_step_with_a_bad_index_under_xla_changes_nothing(name):
  """All or nothing under XLA, where nothing is rolled back: the sparse op's custom call checks its
  indices before it writes, and the dense group's update and the beta powers' advance depend on
  its results by data (XLA orders by data only), so a bad index stops the step before either."""
  dense = tf.Variable(np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4))
  table = tf.Variable(np.linspace(1, 2, 40, dtype=np.float32).reshape(10, 4))
  opt = V1_OPTIMIZERS[name]()

  @tf.function(jit_compile=True)
  def step(indices):
    rows = tf.IndexedSlices(tf.ones((3, 4)), indices, tf.constant([10, 4], tf.int64))
    opt.apply_gradients([(tf.ones((6, 4)), dense), (rows, table)])

  step(tf.constant([0, 1, 1], tf.int64))  # creates the slots; a good step
  hlo = _hlo(step, tf.constant([0, 1, 1], tf.int64))
  assert hlo.count(DENSE_TARGET) == 1 and hlo.count(SPARSE_TARGET) == 1
  state = lambda: ([dense.numpy(), table.numpy()]
                   + [opt.get_slot(v, s).numpy() for v in (dense, table) for s in opt.get_slot_names()]
                   + [p.numpy() for p in opt._get_beta_accumulators()])
  before = state()
  for bad in ([0, 10, 1], [-1, 0, 1]):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[\d\] = -?\d+ is not in \[0, 10\)"):
      step(tf.constant(bad, tf.int64))
    assert_bitwise_equal(state(), before, names=[f"state[{i}]" for i in range(len(before))])
  step(tf.constant([2, 3, 3], tf.int64))  # and the step still runs, advancing the powers once
  np.testing.assert_array_equal(opt._get_beta_accumulators()[0].numpy(),
                                np.float32(np.float32(0.9) ** 2 * np.float32(0.9)))


def test_the_composite_is_taken_when_the_kernels_are_turned_off(monkeypatch):
  monkeypatch.setenv(_xla.KERNELS_ENVIRONMENT_VARIABLE, "0")
  assert not _xla.kernels_enabled()
  _, run = _train_v1(V1_OPTIMIZERS["adam"], "xla", dtypes=(np.float32,))
  assert "custom_call_target" not in _hlo(run, tf.constant(1.0, tf.float64))


def test_gpu_variables_take_the_kernels_only_with_the_cuda_handlers():
  from tf_adam_op import _build_info

  class On:
    def __init__(self, device):
      self.device = f"/job:localhost/replica:0/task:0/device:{device}:0"
  assert _xla.kernels_usable([tf.Variable(1.0), On("CPU")])
  assert _xla.kernels_usable([On("GPU")]) == _build_info.CUDA_KERNELS_BUILT
  assert not _xla.kernels_usable([On("TPU")])


def test_kernels_register_when_xla_compiled_before_the_import(tmp_path):
  """TensorFlow builds the XLA devices' kernels on the first XLA compilation; a process that
  compiled before `import tf_adam_op` gets ours registered directly (adam_xla_kernels.cc)."""
  script = textwrap.dedent("""
      import tensorflow as tf
      tf.function(lambda x: x * 2, jit_compile=True)(tf.constant(1.0))
      import tf_adam_op
      var = tf.Variable([1.0, 2.0])
      opt = tf_adam_op.AdamOptimizer(0.1)
      step = tf.function(lambda: [opt.apply_gradients([(tf.ones(2), var)]), None][1],
                         jit_compile=True)
      step()
      assert "tf_adam_op_dense_adam" in step.experimental_get_compiler_ir()(stage="hlo")
      print(list(var.numpy() - [1.0, 2.0]))
  """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  # Not from the checkout: there `import tf_adam_op` would find the unbuilt sources first.
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  moved = eval(result.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(moved, [-0.1, -0.1], rtol=1e-5)  # Adam's first step: -lr


# --- tf_keras and Keras 3 fit with XLA; a SavedModel of a compiled step ----------------------------

def test_tf_keras_fit_with_xla_runs_the_kernels(monkeypatch):
  """tf_keras compiles its train step with XLA (jit_compile=True): ours runs the custom calls there
  (counted at trace time) and trains as stock does under XLA, up to XLA's rounding of stock's
  composite (XLA's CPU compiler contracts multiply-adds: a few ulps)."""
  tf_keras = pytest.importorskip("tf_keras")
  calls = []
  real = ops.resource_apply_adam_v1_multi_unpacked
  monkeypatch.setattr(ops, "resource_apply_adam_v1_multi_unpacked",
                      lambda *a, **k: calls.append(1) or real(*a, **k))

  def fit(cls):
    rng = np.random.default_rng(60)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    model = tf_keras.Sequential([tf_keras.Input((5,)), tf_keras.layers.Dense(8, activation="tanh"),
                                 tf_keras.layers.Dense(1)])
    model.set_weights([np.linspace(-0.5, 0.5, w.size, dtype=np.float32).reshape(w.shape)
                       for w in model.get_weights()])
    model.compile(optimizer=cls(0.01), loss="mse", jit_compile=True)
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    return model.get_weights()

  ours = fit(OPTIMIZERS["ours"])
  assert calls, "the fused op was not traced into the XLA train step"
  stock = fit(OPTIMIZERS["stock"])
  for a, b in zip(ours, stock):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras3_fit_with_xla_runs_the_kernels(monkeypatch):
  keras = pytest.importorskip("keras")
  if not keras.__version__.startswith("3"):
    pytest.skip("Keras 3 is not installed")
  from tf_adam_op import keras as tk
  calls = []
  real = ops.resource_apply_adam_v1_multi_unpacked
  monkeypatch.setattr(ops, "resource_apply_adam_v1_multi_unpacked",
                      lambda *a, **k: calls.append(1) or real(*a, **k))

  def fit(optimizer):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=True)
    rng = np.random.default_rng(61)
    x, y = rng.standard_normal((64, 6)).astype(np.float32), rng.standard_normal((64, 1))
    loss = model.fit(x, y.astype(np.float32), batch_size=16, epochs=2, shuffle=False,
                     verbose=0).history["loss"]
    return model.get_weights(), loss

  ours, ours_loss = fit(tk.AdamW(learning_rate=0.01, weight_decay=0.01))
  assert calls, "the fused op was not traced into the XLA train step"
  expected, expected_loss = fit(keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.01))
  np.testing.assert_allclose(ours_loss, expected_loss, rtol=1e-5)
  for a, b in zip(ours, expected):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _Trainer(tf.Module):
  def __init__(self):
    super().__init__()
    rng = np.random.default_rng(70)
    self.w = tf.Variable(rng.standard_normal((30, 4)).astype(np.float32))
    self.b = tf.Variable(np.zeros(4, np.float64))
    self.opt = tf_adam_op.AdamOptimizer(0.05)

  @tf.function(jit_compile=True, input_signature=[tf.TensorSpec((None, 30), tf.float32)])
  def train(self, x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(x @ self.w)) + tf.cast(tf.reduce_sum(self.b * self.b), tf.float32)
    grads = tape.gradient(loss, [self.w, self.b])
    self.opt.apply_gradients(zip(grads, [self.w, self.b]))
    return loss


def test_saved_model_of_an_xla_compiled_step_trains_on_exactly(tmp_path):
  x = tf.constant(np.random.default_rng(71).standard_normal((8, 30)).astype(np.float32))
  trainer = _Trainer()
  trainer.b.assign(np.full(4, 0.5))
  trainer.train(x)
  tf.saved_model.save(trainer, str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path))
  for _ in range(2):
    trainer.train(x)
    loaded.train(x)
  assert_bitwise_equal([loaded.w.numpy(), loaded.b.numpy()], [trainer.w.numpy(), trainer.b.numpy()],
                       names=("w", "b"))
  assert "tf_adam_op_dense_adam" in trainer.train.experimental_get_compiler_ir(x)(stage="hlo")


def test_saved_xla_step_loads_in_a_fresh_process_and_trains_on_exactly(tmp_path):
  x = np.random.default_rng(72).standard_normal((8, 30)).astype(np.float32)
  trainer = _Trainer()
  trainer.train(tf.constant(x))
  tf.saved_model.save(trainer, str(tmp_path / "model"))
  np.save(tmp_path / "x.npy", x)
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      import tf_adam_op
      loaded = tf.saved_model.load({str(tmp_path / "model")!r})
      loaded.train(tf.constant(np.load({str(tmp_path / "x.npy")!r})))
      np.save({str(tmp_path / "w.npy")!r}, loaded.w.numpy())
  """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  # Not from the checkout: there `import tf_adam_op` would find the unbuilt sources first.
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  trainer.train(tf.constant(x))
  assert_bitwise_equal([np.load(tmp_path / "w.npy")], [trainer.w.numpy()], names=("w",))
