"""tf_adam_op.keras.Adam / AdamW against Keras 3's own optimizers in the same process, bit for bit.

Every test steps Keras's optimizer and ours from the same start with the same gradients and
compares every model and optimizer variable bitwise (float32/float64); 16-bit variables and lazy
rows, which Keras has no rule for, are compared with a NumPy implementation of the rule.
"""


import numpy as np
import pytest
import tensorflow as tf

keras = pytest.importorskip("keras")
if not keras.__version__.startswith("3."):
  pytest.skip(f"tf_adam_op.keras needs Keras 3, found {keras.__version__}", allow_module_level=True)

import tf_adam_op.keras as tk
from tf_adam_op._step import xla as _xla
from helpers import assert_bitwise_equal
from keras_cases import PAIRS, _gradients, _initial, _train


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


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_lazy_adamw_decays_only_the_named_rows(mode):
  """lazy=True with AdamW: the rows an IndexedSlices gradient names take their weight decay
  (Keras's var -= (var * wd) * lr, before the update) and the others keep their value, in every
  mode (in graphs without XLA Keras's own decay pass, which decays every row, used to run)."""
  rng = np.random.default_rng(5)
  start = rng.standard_normal((30, 4)).astype(np.float32)
  var = keras.Variable(start)
  opt = tk.AdamW(learning_rate=0.01, weight_decay=0.5, lazy=True)
  step = lambda g: opt.apply_gradients([(g, var)])
  run = {"eager": step, "function": tf.function(step),
         "xla": tf.function(step, jit_compile=True)}[mode]
  ref_var, ref_m, ref_v = start.copy(), np.zeros_like(start), np.zeros_like(start)
  rows = np.array([2, 7, 29], np.int32)
  for t in range(1, 4):
    values = rng.standard_normal((3, 4)).astype(np.float32)
    run(tf.IndexedSlices(tf.constant(values), tf.constant(rows), tf.constant([30, 4])))
    ref_var[rows] = ref_var[rows] - (ref_var[rows] * np.float32(0.5)) * np.float32(0.01)
    numpy_keras_step(ref_var, ref_m, ref_v, values, values * values, t, lr=0.01, rows=rows)
  np.testing.assert_array_equal(var.numpy(), ref_var)
  untouched = np.setdiff1d(np.arange(30), rows)
  np.testing.assert_array_equal(var.numpy()[untouched], start[untouched])
