"""tf_adam_op.keras.Adam / AdamW against Keras 3's own optimizers in the same process, bit for bit.

Every test steps Keras's optimizer and ours from the same start with the same gradients and
compares every model and optimizer variable bitwise (float32/float64); 16-bit variables and lazy
rows, which Keras has no rule for, are compared with a NumPy implementation of the rule.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

keras = pytest.importorskip("keras")
if not keras.__version__.startswith("3."):
  pytest.skip(f"tf_adam_op.keras needs Keras 3, found {keras.__version__}", allow_module_level=True)

import tf_adam_op.keras as tk
from tf_adam_op._step import xla as _xla
from helpers import assert_bitwise_equal

PAIRS = {"Adam": (keras.optimizers.Adam, tk.Adam), "AdamW": (keras.optimizers.AdamW, tk.AdamW)}
SHAPES = [(40, 8), (8,), (3, 5, 2)]
STEPS = 5


def _gradients(dtype, sparse, seed=1):
  """STEPS lists of gradients for SHAPES; with `sparse` the first one is IndexedSlices with
  repeated indices."""
  rng = np.random.default_rng(seed)
  steps = []
  for _ in range(STEPS):
    grads = [tf.constant(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    if sparse:
      indices = tf.constant(rng.integers(0, SHAPES[0][0], 12))
      grads[0] = tf.IndexedSlices(tf.constant(rng.standard_normal((12, 8)).astype(dtype)),
                                  indices, tf.constant(SHAPES[0]))
    steps.append(grads)
  return steps


def _initial(dtype):
  rng = np.random.default_rng(0)
  return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _train(make_opt, dtype, mode, sparse, configure=None, names=("w", "b", "c")):
  variables = [keras.Variable(w, dtype=dtype, name=n) for w, n in zip(_initial(dtype), names)]
  opt = make_opt()
  if configure is not None:
    configure(opt, variables)

  def step(grads):
    opt.apply_gradients(zip(grads, variables))

  run = {"eager": step, "function": tf.function(step),
         "xla": tf.function(step, jit_compile=True)}[mode]
  for grads in _gradients(dtype, sparse):
    run(grads)
  state = [v.numpy() for v in variables] + [x.numpy() for x in opt.variables]
  # Paths without the optimizer's name, which Keras makes unique per process (adam, adam_1, ...).
  return state, [x.path.split("/", 1)[1] for x in opt.variables], opt


def assert_same_training(kind, dtype=np.float32, mode="eager", sparse=False, configure=None,
                         **kwargs):
  keras_cls, ours_cls = PAIRS[kind]
  try:
    expected, expected_names, _ = _train(lambda: keras_cls(**kwargs), dtype, mode, sparse,
                                         configure)
  except Exception as keras_error:
    # What Keras itself cannot do (e.g. loss_scale_factor with IndexedSlices): ours fails alike.
    with pytest.raises(type(keras_error)):
      _train(lambda: ours_cls(**kwargs), dtype, mode, sparse, configure)
    return
  actual, actual_names, _ = _train(lambda: ours_cls(**kwargs), dtype, mode, sparse, configure)
  assert actual_names == expected_names
  for name, a, e in zip(["w", "b", "c"] + expected_names, actual, expected):
    np.testing.assert_array_equal(a, e, err_msg=f"{name} differs ({kind}, {mode}, {kwargs})")


FEATURES = {
    "defaults": {},
    "amsgrad": dict(amsgrad=True),
    "weight_decay": dict(weight_decay=0.05),
    "amsgrad_weight_decay": dict(amsgrad=True, weight_decay=0.02),
    "clipnorm": dict(clipnorm=0.5),
    "clipvalue": dict(clipvalue=0.3),
    "global_clipnorm": dict(global_clipnorm=0.7),
    "ema": dict(use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=2),
    "loss_scale_factor": dict(loss_scale_factor=8.0),
    "gradient_accumulation": dict(gradient_accumulation_steps=2),
    "betas_epsilon": dict(beta_1=0.8, beta_2=0.99, epsilon=1e-3, learning_rate=0.02),
}


@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
@pytest.mark.parametrize("feature", sorted(FEATURES))
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_bitwise_as_keras_float32(kind, feature, mode, sparse):
  assert_same_training(kind, np.float32, mode, sparse, **FEATURES[feature])


@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
@pytest.mark.parametrize("feature", ["defaults", "amsgrad", "weight_decay"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_bitwise_as_keras_float64(kind, feature, mode, sparse):
  assert_same_training(kind, np.float64, mode, sparse, **FEATURES[feature])


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_schedules_and_hyperparameter_types(mode):
  schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)
  assert_same_training("Adam", mode=mode, learning_rate=schedule)
  assert_same_training("AdamW", mode=mode, learning_rate=schedule, weight_decay=0.1)
  assert_same_training("Adam", mode=mode, learning_rate=np.float32(0.003), beta_1=np.float64(0.85))
  assert_same_training("Adam", mode=mode, learning_rate=1, epsilon=1)  # integers


def test_learning_rate_set_between_steps():
  results = []
  for cls in PAIRS["Adam"]:
    var = keras.Variable(_initial(np.float32)[0])
    opt = cls(learning_rate=0.01)
    for i, grads in enumerate(_gradients(np.float32, False)):
      opt.learning_rate = 0.01 / (i + 1)
      opt.apply_gradients([(grads[0], var)])
    results.append(var.numpy())
  np.testing.assert_array_equal(results[1], results[0])


def test_weight_decay_in_graphs_gets_grappler_rewrites_as_keras_does():
  """AdamW with a schedule in tf.function, and float64 sparse AdamW: where grappler's arithmetic
  optimizer rewrote Keras's var * wd * lr (1 ulp apart when ours decayed in the op)."""
  schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)
  assert_same_training("AdamW", mode="function", learning_rate=schedule, weight_decay=0.1)
  assert_same_training("AdamW", np.float64, "function", True, learning_rate=0.01,
                       weight_decay=0.05)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_exclude_from_weight_decay(mode):
  by_name = lambda opt, variables: opt.exclude_from_weight_decay(var_names=["b"])
  by_list = lambda opt, variables: opt.exclude_from_weight_decay(var_list=[variables[2]])
  assert_same_training("AdamW", mode=mode, configure=by_name, weight_decay=0.1)
  assert_same_training("AdamW", mode=mode, sparse=True, configure=by_list, weight_decay=0.1)


def test_xla_composite_gives_keras_xla_numbers(monkeypatch):
  """Without the ops' XLA kernels (here turned off) an XLA step is Keras's own update."""
  monkeypatch.setenv(_xla.KERNELS_ENVIRONMENT_VARIABLE, "0")
  for kind in PAIRS:
    for feature in ("defaults", "amsgrad", "weight_decay"):
      assert_same_training(kind, np.float32, "xla", False, **FEATURES[feature])
      assert_same_training(kind, np.float32, "xla", True, **FEATURES[feature])


@pytest.mark.skipif(not _xla.kernels_enabled(), reason="the build has no XLA kernels")
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("feature", ["defaults", "amsgrad_weight_decay", "gradient_accumulation",
                                     "betas_epsilon"])
@pytest.mark.parametrize("kind", PAIRS)
def test_xla_kernels_give_keras_numbers_without_xla(kind, feature, sparse):
  """With the XLA kernels an XLA step runs the fused ops: Keras's eager numbers, bit for bit (Keras's
  own XLA step rounds differently, XLA contracting its multiply-adds). What Keras computes around
  the update (clipping norms, the EMA) is Keras's, compiled by XLA, so those features are left out:
  measured, they differ from eager by XLA's rounding with either optimizer."""
  keras_cls, ours_cls = PAIRS[kind]
  for dtype in (np.float32, np.float64):
    expected, _, _ = _train(lambda: keras_cls(**FEATURES[feature]), dtype, "eager", sparse)
    actual, _, _ = _train(lambda: ours_cls(**FEATURES[feature]), dtype, "xla", sparse)
    assert_bitwise_equal(actual, expected, names=[f"state[{i}]" for i in range(len(expected))])


# --- what Keras has no rule for: 16-bit variables in float32, lazy rows --------------------------

def numpy_keras_step(var, m, v, g, g_squared, step, lr=0.001, beta_1=0.9, beta_2=0.999,
                     epsilon=1e-7, rows=None):
  """Keras 3's Adam rule in float32 (var, m, v float32 arrays, updated in place on `rows`)."""
  f = np.float32
  b1p, b2p = np.power(f(beta_1), f(step)), np.power(f(beta_2), f(step))
  alpha = f(lr) * np.sqrt(f(1) - b2p) / (f(1) - b1p)
  sel = slice(None) if rows is None else rows
  m[sel] = m[sel] + (g - m[sel]) * f(1 - beta_1)
  v[sel] = v[sel] + (g_squared - v[sel]) * f(1 - beta_2)
  var[sel] = var[sel] - (m[sel] * alpha) / (np.sqrt(v[sel]) + f(epsilon))


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_16_bit_variables_are_computed_in_float32(dtype, mode):
  rng = np.random.default_rng(3)
  start = rng.standard_normal((64,)).astype(np.float32)
  var = keras.Variable(tf.cast(start, dtype))
  opt = tk.Adam(learning_rate=0.01)
  grads = [rng.standard_normal(64).astype(np.float32) for _ in range(3)]
  step = lambda g: opt.apply_gradients([(tf.cast(g, dtype), var)])
  run = {"eager": step, "function": tf.function(step),
         "xla": tf.function(step, jit_compile=True)}[mode]
  ref_var = tf.cast(start, dtype).numpy().astype(np.float32)
  ref_m, ref_v = np.zeros(64, np.float32), np.zeros(64, np.float32)
  for t, g in enumerate(grads, start=1):
    run(g)
    g16 = tf.cast(g, dtype).numpy().astype(np.float32)
    numpy_keras_step(ref_var, ref_m, ref_v, g16, g16 * g16, t, lr=0.01)
    # rounded once per step, to the variable's dtype
    ref_var, ref_m, ref_v = (tf.cast(x, dtype).numpy().astype(np.float32)
                             for x in (ref_var, ref_m, ref_v))
  np.testing.assert_array_equal(tf.cast(var.value, tf.float32).numpy(), ref_var)
  assert not np.array_equal(ref_var, tf.cast(tf.cast(start, dtype), tf.float32).numpy())


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_lazy_updates_only_the_named_rows(mode):
  rng = np.random.default_rng(4)
  start = rng.standard_normal((30, 4)).astype(np.float32)
  var = keras.Variable(start)
  opt = tk.Adam(learning_rate=0.01, lazy=True)
  step = lambda g: opt.apply_gradients([(g, var)])
  run = {"eager": step, "function": tf.function(step),
         "xla": tf.function(step, jit_compile=True)}[mode]
  ref_var, ref_m, ref_v = start.copy(), np.zeros_like(start), np.zeros_like(start)
  for t in range(1, 4):
    indices = np.array([2, 7, 2, 29], np.int32)
    values = rng.standard_normal((4, 4)).astype(np.float32)
    run(tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([30, 4])))
    rows = np.unique(indices)
    g = np.stack([values[indices == r].sum(0) if (indices == r).sum() == 1 else
                  values[indices == r][0] + values[indices == r][1] for r in rows])
    g_squared = np.stack([(values[indices == r] ** 2).sum(0) if (indices == r).sum() == 1 else
                          values[indices == r][0] ** 2 + values[indices == r][1] ** 2 for r in rows])
    numpy_keras_step(ref_var, ref_m, ref_v, g, g_squared, t, lr=0.01, rows=rows)
  np.testing.assert_array_equal(var.numpy(), ref_var)
  untouched = np.setdiff1d(np.arange(30), [2, 7, 29])
  np.testing.assert_array_equal(var.numpy()[untouched], start[untouched])


# --- model.fit, saving, checkpoints ---------------------------------------------------------------

def _cnn():
  return keras.Sequential([
      keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
      keras.layers.Flatten(), keras.layers.Dense(3)])


def _embedding_model():
  return keras.Sequential([
      keras.Input((6,), dtype="int32"), keras.layers.Embedding(50, 8),
      keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])


def _data(kind):
  rng = np.random.default_rng(5)
  if kind == "cnn":
    return rng.standard_normal((64, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 64)
  return rng.integers(0, 50, (64, 6)).astype(np.int32), rng.standard_normal((64, 1)).astype(np.float32)


def _fit(kind, optimizer, jit_compile, epochs=2):
  keras.utils.set_random_seed(7)
  model = _cnn() if kind == "cnn" else _embedding_model()
  loss = (keras.losses.SparseCategoricalCrossentropy(from_logits=True) if kind == "cnn"
          else "mse")
  model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile)
  x, y = _data(kind)
  history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
  return model, history.history["loss"]


@pytest.mark.parametrize("kind", ["cnn", "embedding"])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_bitwise_as_keras(kind, name, jit_compile, monkeypatch):
  """fit, with XLA on the composite path (Keras's XLA numbers; the kernels' fit under XLA is in
  test_xla_kernels.py)."""
  if jit_compile:
    monkeypatch.setenv(_xla.KERNELS_ENVIRONMENT_VARIABLE, "0")
  keras_cls, ours_cls = PAIRS[name]
  expected, expected_loss = _fit(kind, keras_cls(learning_rate=0.01), jit_compile)
  actual, actual_loss = _fit(kind, ours_cls(learning_rate=0.01), jit_compile)
  assert actual_loss == expected_loss
  # Names without the numbers Keras adds to make layer and model names unique in the process.
  unnumbered = lambda variable: re.sub(r"_\d+", "", variable.path.split("/")[-1])
  for a, e in zip(actual.weights + actual.optimizer.variables,
                  expected.weights + expected.optimizer.variables):
    assert unnumbered(a) == unnumbered(e)
    np.testing.assert_array_equal(a.numpy(), e.numpy(), err_msg=a.path)


def test_mixed_float16_with_loss_scale_optimizer():
  results = []
  for cls in PAIRS["Adam"]:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
      model, losses = _fit("cnn", keras.optimizers.LossScaleOptimizer(cls(learning_rate=0.01)),
                           jit_compile=False)
    finally:
      keras.mixed_precision.set_global_policy("float32")
    results.append(([w.numpy() for w in model.weights], losses))
  for a, e in zip(*[r[0] for r in results]):
    np.testing.assert_array_equal(a, e)
  assert results[0][1] == results[1][1]


def test_config_round_trip_and_registration():
  opt = tk.AdamW(learning_rate=0.02, weight_decay=0.1, amsgrad=True, lazy=True, clipnorm=1.0)
  config = opt.get_config()
  assert config["lazy"] is True
  expected = keras.optimizers.AdamW(learning_rate=0.02, weight_decay=0.1, amsgrad=True,
                                    clipnorm=1.0).get_config()
  drop = lambda c, keys: {k: v for k, v in c.items() if k not in keys}
  assert drop(config, ("lazy", "name")) == drop(expected, ("name",))
  again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
  assert type(again) is tk.AdamW and again.get_config() == config
  # Configs interchange both ways where they mean the same: a default (not lazy) config is Keras's.
  plain = tk.AdamW(learning_rate=0.02, weight_decay=0.1, amsgrad=True, clipnorm=1.0).get_config()
  assert "lazy" not in plain
  assert drop(keras.optimizers.AdamW.from_config(plain).get_config(), ("name",)) == drop(
      plain, ("name",))
  assert drop(tk.AdamW.from_config(expected).get_config(), ("name",)) == drop(expected, ("name",))
  with pytest.raises(ValueError, match="lazy"):
    keras.optimizers.AdamW.from_config(config)  # Keras has no lazy mode: refused, not dropped


def test_keras_file_round_trip(tmp_path):
  model, _ = _fit("cnn", tk.Adam(learning_rate=0.01), jit_compile=False, epochs=1)
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert type(loaded.optimizer) is tk.Adam
  for a, e in zip(loaded.optimizer.variables, model.optimizer.variables):
    np.testing.assert_array_equal(a.numpy(), e.numpy())
  # save -> load -> save -> load keeps the optimizer and its state
  again_path = str(tmp_path / "again.keras")
  loaded.save(again_path)
  again = keras.models.load_model(again_path)
  assert type(again.optimizer) is tk.Adam
  for a, e in zip(again.optimizer.variables, model.optimizer.variables):
    np.testing.assert_array_equal(a.numpy(), e.numpy())
  # Both continue alike; and so does Keras's Adam given the same state (interchange).
  x, y = _data("cnn")
  reference = keras.models.clone_model(model)
  reference.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  reference.set_weights(model.get_weights())
  reference.optimizer.build(reference.trainable_variables)
  for r, o in zip(reference.optimizer.variables, model.optimizer.variables):
    r.assign(o)
  for m in (loaded, reference):
    m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
  for a, e in zip(loaded.weights, reference.weights):
    np.testing.assert_array_equal(a.numpy(), e.numpy())


def test_checkpoints_interchange_with_keras(tmp_path):
  """A tf.train.Checkpoint of Keras's Adam restores into ours and back, and both go on alike."""
  grads = _gradients(np.float32, False)
  start = _initial(np.float32)
  keras_vars = [keras.Variable(w) for w in start]
  keras_opt = keras.optimizers.Adam(0.01, amsgrad=True)
  keras_opt.apply_gradients(zip(grads[0], keras_vars))
  path = tf.train.Checkpoint(opt=keras_opt, v=keras_vars).save(str(tmp_path / "keras"))
  ours_vars = [keras.Variable(np.zeros_like(w)) for w in start]
  ours_opt = tk.Adam(0.01, amsgrad=True)
  ours_opt.build(ours_vars)
  tf.train.Checkpoint(opt=ours_opt, v=ours_vars).restore(path).assert_consumed()
  for opt, variables in ((keras_opt, keras_vars), (ours_opt, ours_vars)):
    for g in grads[1:]:
      opt.apply_gradients(zip(g, variables))
  for a, e in zip(ours_vars + ours_opt.variables, keras_vars + keras_opt.variables):
    np.testing.assert_array_equal(a.numpy(), e.numpy())
  back = tf.train.Checkpoint(opt=ours_opt, v=ours_vars).save(str(tmp_path / "ours"))
  fresh_opt = keras.optimizers.Adam(0.01, amsgrad=True)
  fresh_vars = [keras.Variable(np.zeros_like(w)) for w in start]
  fresh_opt.build(fresh_vars)
  tf.train.Checkpoint(opt=fresh_opt, v=fresh_vars).restore(back).assert_consumed()
  for a, e in zip(fresh_vars + fresh_opt.variables, ours_vars + ours_opt.variables):
    np.testing.assert_array_equal(a.numpy(), e.numpy())


def test_mirrored_strategy_as_keras():
  devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
  results = []
  for cls in PAIRS["AdamW"]:
    # Not collective ops: their instance keys clash with other strategies' in one test process.
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
      model, _ = _fit("cnn", cls(learning_rate=0.01, weight_decay=0.01), jit_compile=False)
    results.append([w.numpy() for w in model.weights + model.optimizer.variables])
  for a, e in zip(*results):
    np.testing.assert_array_equal(a, e)


# --- structure: one op per group, ordered with the function's other ops --------------------------

def test_one_multi_tensor_op_per_group_and_program_order():
  variables = [keras.Variable(w) for w in _initial(np.float32)]
  variables.append(keras.Variable(np.ones(4, np.float64)))
  opt = tk.Adam(0.01)

  @tf.function
  def step(grads):
    before = variables[0].value.read_value()
    opt.apply_gradients(zip(grads, variables))
    return before, variables[0].value.read_value()

  grads = _gradients(np.float32, False)[0] + [tf.ones(4, tf.float64)]
  start = variables[0].numpy()
  graph = step.get_concrete_function(grads).graph
  types = [op.type for op in graph.get_operations()]
  assert types.count("ResourceApplyAdamV1MultiNoAdvance") == 2  # float32 and float64
  assert not {"ResourceApplyAdam", "ResourceApplyAdamV1", "AssignSubVariableOp"} & set(types)
  multi = [op for op in graph.get_operations() if op.type == "ResourceApplyAdamV1MultiNoAdvance"]
  # Structural: the read after apply_gradients waits for the float32 group's op.
  after = step.get_concrete_function(grads).outputs[1].op
  ancestors, stack = set(), [after]
  while stack:
    op = stack.pop()
    for dep in list(op.control_inputs) + [t.op for t in op.inputs]:
      if dep not in ancestors:
        ancestors.add(dep)
        stack.append(dep)
  assert any(op in ancestors for op in multi)
  before, after_value = step(grads)
  np.testing.assert_array_equal(before.numpy(), start)
  np.testing.assert_array_equal(after_value.numpy(), variables[0].numpy())
  assert not np.array_equal(after_value.numpy(), start)


def test_unsupported_dtype_is_a_clear_error():
  var = keras.Variable(np.ones(3, np.int32), dtype="int32")
  opt = tk.Adam()
  with pytest.raises(ValueError, match="int32"):
    opt.apply_gradients([(tf.ones(3, tf.int32), var)])
  assert var.numpy().tolist() == [1, 1, 1]
