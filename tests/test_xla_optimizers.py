"""The optimizers under XLA with the ops' XLA kernels (cc/xla): v1 and Keras steps, tf_keras and
Keras 3 fit, a SavedModel of a compiled step; each against its step without XLA, bit for bit.
The ops themselves under XLA: test_xla_kernels.py; without the kernels: test_xla_composite.py.
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
from xla_cases import DENSE_TARGET, SPARSE_TARGET, STEPS, _hlo

pytestmark = pytest.mark.skipif(not _loader.xla_kernels()[0],
                                reason=f"XLA kernels: {_loader.xla_kernels()[1]}")


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
