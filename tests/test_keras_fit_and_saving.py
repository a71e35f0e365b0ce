"""tf_adam_op.keras.Adam/AdamW in Keras's machinery: model.fit (with and without XLA) bit for bit as
Keras's own, mixed precision, configs, .keras files, checkpoints both ways, MirroredStrategy, and
one multi-tensor op per group in program order. The step against Keras's: test_keras_optimizers.py.
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
from keras_cases import PAIRS, _gradients, _initial


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
