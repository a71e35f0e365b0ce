"""state_bits=8 on both optimizer families: every mode against the NumPy reference of the 8-bit
rule, small variables kept in float32, checkpoints, conversions, and what is refused."""

import numpy as np
import pytest
import tensorflow as tf

import state_8bit_reference as ref
from xla_cases import ancestors, calls_not_after, entry_calls, graph_ancestors
from xla_cases import outputs_not_after
import tf_adam_op
from tf_adam_op import state_8bit

keras = pytest.importorskip("keras")
KERAS_3 = keras.__version__.startswith("3.")
if KERAS_3:
  import tf_adam_op.keras as tk
# The Keras half of this file: tf_adam_op.keras needs Keras 3 (TF 2.16+; CI's TF 2.15 has Keras 2).
needs_keras_3 = pytest.mark.skipif(
    not KERAS_3, reason=f"tf_adam_op.keras needs Keras 3, found {keras.__version__}")
# The XLA tests: the ops' XLA kernels are built for TF 2.21 only (docs/xla.md).
from tf_adam_op._step import xla as _xla  # noqa: E402
needs_xla_kernels = pytest.mark.skipif(not _xla.kernels_enabled(),
                                       reason=f"no XLA kernels here: {_xla.describe()}")

SHAPE = (40, 130)  # 5,200 elements: 8-bit states (>= 4,096), with a short last block


def _data(seed=0, steps=3):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=SHAPE).astype(np.float32),
          [rng.normal(size=SHAPE).astype(np.float32) for _ in range(steps)])


def _v1_reference(var0, grads, lr=0.01, amsgrad=False, **options):
  states, var = ref.States(var0.size, amsgrad), var0.copy()
  powers = [np.float32(0.9), np.float32(0.999)]
  for g in grads:
    var = ref.step(var, states, g, *powers, lr, 0.9, 0.999, 1e-8, **options)
    powers = [powers[0] * np.float32(0.9), powers[1] * np.float32(0.999)]
  return var, states


def _v1_run(mode, var0, grads, optimizer):
  if mode == "graph":
    with tf.Graph().as_default():
      var = tf.compat.v1.Variable(var0, use_resource=True)
      grad = tf.compat.v1.placeholder(tf.float32, SHAPE)
      train = optimizer.apply_gradients([(grad, var)])
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        for g in grads:
          session.run(train, {grad: g})
        return session.run(var)
  var = tf.Variable(var0)

  def step(g):
    optimizer.apply_gradients([(g, var)])
  if mode == "function":
    step = tf.function(step)
  for g in grads:
    step(tf.constant(g))
  return var.numpy()


@pytest.mark.parametrize("mode", ["eager", "function", "graph"])
@pytest.mark.parametrize("variant", ["adam", "amsgrad", "adamw"])
def test_v1_modes_equal_reference(mode, variant):
  var0, grads = _data()
  if variant == "adamw":
    optimizer = tf_adam_op.AdamWOptimizer(0.05, learning_rate=0.01, state_bits=8)
    expected, _ = _v1_reference(var0, grads, weight_decay=0.05)
  else:
    optimizer = tf_adam_op.AdamOptimizer(0.01, state_bits=8, amsgrad=variant == "amsgrad")
    expected, _ = _v1_reference(var0, grads, amsgrad=variant == "amsgrad")
  np.testing.assert_array_equal(_v1_run(mode, var0, grads, optimizer), expected)


def test_v1_slots_and_small_variables():
  var0, grads = _data()
  big, small = tf.Variable(var0), tf.Variable(np.ones(100, np.float32))
  opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  opt.apply_gradients([(tf.constant(grads[0]), big), (tf.ones(100), small)])
  assert opt.get_slot(big, "m") is None and opt.get_slot(big, "m_codes").dtype == tf.uint8
  assert opt.get_slot(big, "v_absmax").shape == (21,)
  assert opt.get_slot(small, "m").dtype == tf.float32 and opt.get_slot(small, "m_codes") is None
  # The small variable's update is stock's float32 one.
  stock = tf.compat.v1.train.AdamOptimizer(0.01)
  small_stock = tf.Variable(np.ones(100, np.float32))
  stock.apply_gradients([(tf.ones(100), small_stock)])
  np.testing.assert_array_equal(small.numpy(), small_stock.numpy())


def test_v1_sparse_and_lazy_equal_reference():
  rng = np.random.default_rng(5)
  var0 = rng.normal(size=(300, 16)).astype(np.float32)
  indices = np.array([4, 17, 4, 250])
  values = rng.normal(size=(4, 16)).astype(np.float32)
  for lazy in (False, True):
    var = tf.Variable(var0)
    opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8, lazy=lazy)
    opt.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(indices)), var)])
    states = ref.States(var0.size)
    expected = ref.sparse_step(var0, states, values, indices, np.float32(0.9), np.float32(0.999),
                               0.01, 0.9, 0.999, 1e-8, lazy=lazy)
    np.testing.assert_array_equal(var.numpy(), expected)


def test_v1_checkpoint_roundtrip_and_float32_conversion(tmp_path):
  var0, grads = _data(steps=4)
  var = tf.Variable(var0)
  opt8 = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  for g in grads[:2]:
    opt8.apply_gradients([(tf.constant(g), var)])
  path = tf.train.Checkpoint(var=var, opt=opt8).save(str(tmp_path / "eight"))
  for g in grads[2:]:
    opt8.apply_gradients([(tf.constant(g), var)])
  uninterrupted = var.numpy()
  var_restored = tf.Variable(np.zeros(SHAPE, np.float32))
  opt_restored = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  opt_restored.apply_gradients([(tf.zeros(SHAPE), var_restored)])  # slots to restore into
  tf.train.Checkpoint(var=var_restored, opt=opt_restored).restore(path).assert_consumed()
  for g in grads[2:]:
    opt_restored.apply_gradients([(tf.constant(g), var_restored)])
  np.testing.assert_array_equal(var_restored.numpy(), uninterrupted)
  # 8-bit -> float32 -> 8-bit gives the same codes back.
  opt32 = tf_adam_op.AdamOptimizer(0.01)
  opt32.apply_gradients([(tf.zeros(SHAPE), tf.Variable(var0))])
  probe = tf.Variable(var0)
  opt32.apply_gradients([(tf.zeros(SHAPE), probe)])
  opt8b = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  opt8b.apply_gradients([(tf.zeros(SHAPE), probe)])
  opt8.apply_gradients([(tf.zeros(SHAPE), probe)])
  state_8bit.copy_states(opt8, opt32, [probe])
  state_8bit.copy_states(opt32, opt8b, [probe])
  for name in ("m_codes", "m_absmax", "v_codes", "v_absmax"):
    np.testing.assert_array_equal(opt8b.get_slot(probe, name).numpy(),
                                  opt8.get_slot(probe, name).numpy())
  values = state_8bit.state_values(opt8, probe)
  np.testing.assert_array_equal(opt32.get_slot(probe, "m").numpy(), values["m"])


def test_copy_states_between_8bit_optimizers_copies_codes_and_scales_exactly():
  """8-bit to 8-bit, copy_states moves the codes and scales as they are, however often: decoding
  and encoding again shrank an m block whose largest magnitude is negative by 0.99297 per copy
  (the signed map has no -1; an outside check)."""
  var = tf.Variable(np.zeros(SHAPE, np.float32))
  source = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  grad = np.full(SHAPE, -0.5, np.float32)
  grad[0, 1] = 0.25
  source.apply_gradients([(tf.constant(grad), var)])
  previous = source
  for _ in range(3):
    target = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
    target.build([var])
    state_8bit.copy_states(previous, target, [var])
    previous = target
  for name in ("m", "v"):
    for got, want in zip(target.state_variables(var)[name], source.state_variables(var)[name]):
      np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=name)


@pytest.mark.parametrize("saved_bits, restoring_bits", [(32, 8), (8, 32)])
@pytest.mark.parametrize("when", ["before_a_step", "after_a_step", "tf1_graph"])
def test_v1_checkpoint_of_the_other_state_kind_is_refused_at_restore(tmp_path, saved_bits,
                                                                     restoring_bits, when):
  """A v1 checkpoint of float32 states restored into a state_bits=8 optimizer (or the reverse)
  is a ValueError naming the variable and the way to convert (copy_states): TensorFlow's restore
  would make the checkpoint's slots beside the optimizer's own, unread, and the moments would
  start from zero, silently (an outside check). Restoring the same kind is tested above."""
  var0, grads = _data(steps=1)
  var = tf.Variable(var0)
  saved_opt = tf_adam_op.AdamOptimizer(0.01, state_bits=saved_bits)
  saved_opt.apply_gradients([(tf.constant(grads[0]), var)])
  path = tf.train.Checkpoint(var=var, opt=saved_opt).save(str(tmp_path / "ckpt"))
  kinds = ("float32", "8-bit") if saved_bits == 32 else ("8-bit", "float32")
  match = (f"holds {kinds[0]} states for {var.name!r}.*keeps {kinds[1]} states for it "
           f"\\(state_bits={restoring_bits}.*state_8bit.copy_states")

  def restore(var, opt):
    return tf.train.Checkpoint(var=var, opt=opt).restore(path)
  if when == "tf1_graph":
    with tf.Graph().as_default():
      var = tf.compat.v1.Variable(var0, use_resource=True, name=var.name.split(":")[0])
      opt = tf_adam_op.AdamOptimizer(0.01, state_bits=restoring_bits)
      with pytest.raises(ValueError, match=match):
        restore(var, opt)
        opt.apply_gradients([(tf.constant(grads[0]), var)])
    return
  var = tf.Variable(np.zeros(SHAPE, np.float32), name=var.name.split(":")[0])
  opt = tf_adam_op.AdamOptimizer(0.01, state_bits=restoring_bits)
  if when == "after_a_step":
    opt.apply_gradients([(tf.zeros(SHAPE), var)])
  states_before = [s.numpy() for s in opt.variables()]
  with pytest.raises(ValueError, match=match):
    restore(var, opt)
  slot_names = {"m_codes", "m_absmax", "v_codes", "v_absmax"} if restoring_bits == 8 else {
      "m", "v"}
  assert set(opt.get_slot_names()) <= slot_names  # no slot of the checkpoint's kind was made
  if when == "after_a_step":
    for slot, before in zip(opt.variables(), states_before):
      if slot.name.split("/")[-1].split(":")[0] not in ("beta1_power", "beta2_power"):
        np.testing.assert_array_equal(slot.numpy(), before)


def _keras_model(bits, seed=1, **options):
  import keras
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([keras.Input((80,)), keras.layers.Dense(64, activation="relu"),
                            keras.layers.Dense(1)])
  model.compile(tk.Adam(1e-3, state_bits=bits, **options), "mse", jit_compile=False)
  return model


@needs_keras_3
def test_keras_fit_equals_its_own_update_steps_and_reference():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(64, 80)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
  model = _keras_model(8)
  kernel0 = model.layers[0].kernel.numpy()
  model.fit(x, y, epochs=1, batch_size=64, verbose=0)
  opt = model.optimizer
  names = [v.name for v in opt.variables]
  assert any(n.endswith("kernel_momentum_codes") for n in names)
  assert any(n.endswith("bias_momentum") for n in names)  # 64 elements: float32
  # The reference with Keras's scalars: beta ** 1 and 1 - beta rounded from doubles.
  with tf.GradientTape() as tape:
    probe = _keras_model(32)
    loss = tf.reduce_mean((probe(x) - y) ** 2)
  grad = tape.gradient(loss, probe.layers[0].kernel).numpy()
  states = ref.States(kernel0.size)
  expected = ref.step(kernel0, states, grad, 0.9, 0.999, 1e-3, 0.9, 0.999, 1e-7,
                      one_minus_beta=(np.float32(1 - 0.9), np.float32(1 - 0.999)))
  np.testing.assert_allclose(model.layers[0].kernel.numpy(), expected, rtol=0, atol=1e-6)


@needs_keras_3
def test_keras_state_variables_are_none_for_a_variable_the_optimizer_does_not_update():
  mine, other = tf.Variable(np.zeros(SHAPE, np.float32)), tf.Variable(np.zeros(SHAPE, np.float32))
  opt = tk.Adam(state_bits=8)
  assert opt.state_variables(mine) is None  # not built yet
  opt.apply_gradients([(tf.ones(SHAPE), mine)])
  assert set(opt.state_variables(mine)) == {"m", "v"} and opt.state_variables(other) is None


@needs_keras_3
@pytest.mark.parametrize("size", [4095, 4096])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int32"])
def test_uses_8bit_answers_for_keras_and_tf_variables_as_the_optimizers_choose(size, dtype):
  """`tf_adam_op.state_8bit.uses_8bit` (public) takes a Keras 3 variable (its dtype a name, its
  shape a tuple: an outside check found an AttributeError) as a TF one, and answers as each
  optimizer chooses: it keeps 8-bit states exactly for the variables it says."""
  keras_var = keras.Variable(np.zeros((size,)), dtype=dtype)
  tf_var = tf.Variable(np.zeros((size,)), dtype=dtype)
  expected = size >= 4096 and dtype != "int32"
  assert state_8bit.uses_8bit(keras_var) == state_8bit.uses_8bit(tf_var) == expected
  if dtype == "int32":
    return
  keras_opt = tf_adam_op.keras.Adam(state_bits=8)
  keras_opt.build([keras_var])
  v1_opt = tf_adam_op.AdamOptimizer(state_bits=8)
  v1_opt.apply_gradients([(tf.zeros_like(tf_var), tf_var)])
  # {"m": its slot variable, or its (codes, absmax) pair with 8-bit states, ...}
  assert isinstance(keras_opt.state_variables(keras_var)["m"], tuple) == expected
  assert isinstance(v1_opt.state_variables(tf_var)["m"], tuple) == expected


@needs_keras_3
def test_keras_config_and_checkpoint(tmp_path):
  model = _keras_model(8)
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(64, 80)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
  model.fit(x, y, epochs=1, verbose=0)
  config = model.optimizer.get_config()
  assert config["state_bits"] == 8 and tk.Adam.from_config(config).state_bits == 8
  path = str(tmp_path / "model.keras")
  model.save(path)
  import keras
  loaded = keras.models.load_model(path)
  for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_keras_3
def test_short_training_is_no_worse_than_float32_states():
  """A regression MLP, 320 steps: 8-bit states end no more than 1% above the float32 states' loss.
  (One-sided: on this model they end lower, by 2-6% depending on the length of the run, which
  is the opposite of the issue's two-sided 1%; docs/state_8bit.md has the figures.)"""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4096, 80)).astype(np.float32)
  w = rng.normal(size=(80, 1)).astype(np.float32) / 4
  y = (x @ w + 0.5 * rng.normal(size=(4096, 1))).astype(np.float32)
  losses = {}
  for bits in (32, 8):
    model = _keras_model(bits)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0, shuffle=False)
    losses[bits] = model.evaluate(x, y, verbose=0)
  assert losses[8] <= 1.01 * losses[32], losses


@pytest.mark.parametrize("bad", [16, 4, True, "8"])
def test_bad_state_bits_is_refused(bad):
  with pytest.raises(ValueError, match="state_bits must be 32"):
    tf_adam_op.AdamOptimizer(state_bits=bad)
  if KERAS_3:
    with pytest.raises(ValueError, match="state_bits must be 32"):
      tk.Adam(state_bits=bad)


def test_ref_variables_are_refused_with_8bit_states():
  with tf.Graph().as_default():
    var = tf.compat.v1.Variable(np.zeros(SHAPE, np.float32), use_resource=False)
    with pytest.raises(ValueError, match="state_bits=8 needs resource variables"):
      tf_adam_op.AdamOptimizer(state_bits=8).apply_gradients([(tf.zeros(SHAPE), var)])


@needs_xla_kernels
@pytest.mark.parametrize("lazy", [False, True])
def test_v1_under_xla_equals_the_step_outside_it(lazy):
  var0, grads = _data()
  results = []
  for jit in (False, True):
    var = tf.Variable(var0)
    opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8, lazy=lazy)

    @tf.function(jit_compile=jit)
    def step(g):
      rows = tf.IndexedSlices(g[:3], tf.constant([1, 7, 1]))
      opt.apply_gradients([(g, var)] if not lazy else [(rows, var)])
    for g in grads:
      step(tf.constant(g))
    results.append([var.numpy()] + [opt.get_slot(var, n).numpy()
                                    for n in ("m_codes", "m_absmax", "v_codes", "v_absmax")])
  for ours, theirs in zip(*results):
    np.testing.assert_array_equal(ours, theirs)


@needs_keras_3
@needs_xla_kernels
def test_keras_under_xla_equals_the_step_outside_it():
  """The optimizer's step on given gradients (a model's XLA-compiled forward and backward give
  other gradients than its uncompiled ones: docs/xla.md)."""
  import keras
  var0, grads = _data()
  results = []
  for jit in (False, True):
    var = keras.Variable(var0)
    opt = tk.AdamW(1e-3, weight_decay=0.01, state_bits=8)

    @tf.function(jit_compile=jit)
    def step(g):
      opt.apply_gradients([(g, var)])
    for g in grads:
      step(tf.constant(g))
    results.append([np.asarray(var)] + [np.asarray(v) for v in opt.variables])
  for ours, theirs in zip(*results):
    np.testing.assert_array_equal(ours, theirs)


@needs_xla_kernels
def test_corrupt_scale_under_xla_is_refused_before_any_write():
  var = tf.Variable(np.ones(SHAPE, np.float32))
  opt = tf_adam_op.AdamOptimizer(state_bits=8)
  opt.apply_gradients([(tf.ones(SHAPE), var)])
  scales = opt.get_slot(var, "m_absmax")
  scales.assign(tf.tensor_scatter_nd_update(scales, [[3]], [-1.0]))
  before = [var.numpy()] + [opt.get_slot(var, n).numpy() for n in ("m_codes", "v_codes")]

  @tf.function(jit_compile=True)
  def step():
    opt.apply_gradients([(tf.ones(SHAPE), var)])
  with pytest.raises(tf.errors.InvalidArgumentError, match=(
      r"8-bit states of 'Variable:0 m_absmax' \(Variable/Adam[_0-9]*:0\): block 3's scale is -1, "
      r".*corrupt")):
    step()
  after = [var.numpy()] + [opt.get_slot(var, n).numpy() for n in ("m_codes", "v_codes")]
  for b, a in zip(before, after):
    np.testing.assert_array_equal(a, b)


def test_xla_without_the_kernels_is_refused_not_silently_changed(monkeypatch):
  monkeypatch.setenv("TF_ADAM_OP_XLA_KERNELS", "0")
  var = tf.Variable(np.zeros(SHAPE, np.float32))
  opt = tf_adam_op.AdamOptimizer(state_bits=8)

  @tf.function(jit_compile=True)
  def step():
    opt.apply_gradients([(tf.ones(SHAPE), var)])
  with pytest.raises(NotImplementedError, match="8-bit states need the ops' XLA kernels"):
    step()


def _run_many_variables(mode, make_variable, optimizer):
  """Three 8-bit variables stepped 3 times in `mode`; in a tf.function, checks that they take one
  ResourceApplyAdam8bitMulti (under XLA: ResourceApplyAdam8bitMultiUnpacked) and no
  single-variable op. Returns (initial values, variables, gradients of each step)."""
  rng = np.random.default_rng(9)
  shapes = [(64, 64), (4096,), (70, 90)]
  values = [rng.normal(size=s).astype(np.float32) for s in shapes]
  grads = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(3)]
  variables = [make_variable(v) for v in values]

  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))
  if mode in ("function", "xla"):
    step = tf.function(step, jit_compile=mode == "xla")
    graph = step.get_concrete_function([tf.constant(g) for g in grads[0]]).graph
    types = [op.type for op in graph.get_operations()]
    multi = "ResourceApplyAdam8bitMultiUnpacked" if mode == "xla" else "ResourceApplyAdam8bitMulti"
    assert types.count(multi) == 1 and "ResourceApplyAdam8bit" not in types, types
  for gs in grads:
    step([tf.constant(g) for g in gs])
  return values, variables, grads


_MANY_MODES = ["eager", "function", pytest.param("xla", marks=needs_xla_kernels)]


@pytest.mark.parametrize("mode", _MANY_MODES)
def test_v1_many_variables_take_one_multi_tensor_op_with_the_reference_numbers(mode):
  """Several 8-bit variables of a step go to one ResourceApplyAdam8bitMulti (the fast path; under
  XLA its unpacked sibling, one custom call)."""
  values, variables, grads = _run_many_variables(
      mode, tf.Variable, tf_adam_op.AdamOptimizer(0.01, state_bits=8))
  for k, var in enumerate(variables):
    expected, _ = _v1_reference(values[k], [gs[k] for gs in grads])
    np.testing.assert_array_equal(var.numpy(), expected)


@pytest.mark.parametrize("with_sparse", [False, True], ids=["dense", "and an IndexedSlices"])
def test_v1_tf1_session_groups_its_8bit_variables_into_one_op(with_sparse):
  """A TF1 graph (and any step with IndexedSlices) takes v1's general path: its dense 8-bit
  updates are held to _finish and grouped there as the float states' are (one
  ResourceApplyAdam8bitMulti, no single-variable op), with the reference's numbers."""
  rng = np.random.default_rng(9)
  shapes = [(64, 64), (4096,), (70, 90)]
  values = [rng.normal(size=s).astype(np.float32) for s in shapes]
  grads = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(3)]
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(v, use_resource=True) for v in values]
    table = tf.compat.v1.Variable(np.ones((10, 4), np.float32), use_resource=True)
    placeholders = [tf.compat.v1.placeholder(tf.float32, s) for s in shapes]
    pairs = list(zip(placeholders, variables))
    if with_sparse:
      pairs.append((tf.IndexedSlices(tf.ones([2, 4]), tf.constant([1, 3])), table))
    train = tf_adam_op.AdamOptimizer(0.01, state_bits=8).apply_gradients(pairs)
    types = [op.type for op in tf.compat.v1.get_default_graph().get_operations()]
    assert types.count("ResourceApplyAdam8bitMulti") == 1, types
    assert "ResourceApplyAdam8bit" not in types, types
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for gs in grads:
        session.run(train, dict(zip(placeholders, gs)))
      results = session.run(variables)
  for k, result in enumerate(results):
    expected, _ = _v1_reference(values[k], [gs[k] for gs in grads])
    np.testing.assert_array_equal(result, expected)


@needs_keras_3
@pytest.mark.parametrize("mode", _MANY_MODES)
def test_keras_many_variables_take_one_multi_tensor_op_with_the_reference_numbers(mode):
  """tf_adam_op.keras plans the dense updates of 8-bit variables as v1's fast path does: one
  ResourceApplyAdam8bitMulti per (device, dtype, decays) group, with Keras's scalars."""
  values, variables, grads = _run_many_variables(mode, keras.Variable,
                                                 tk.Adam(0.01, state_bits=8))
  # Keras's scalars: beta ** t in float32 (its ops.power), 1 - beta rounded from doubles.
  powers = [[tf.pow(tf.constant(b, tf.float32), float(t)).numpy() for b in (0.9, 0.999)]
            for t in (1, 2, 3)]
  for k, var in enumerate(variables):
    states, expected = ref.States(values[k].size), values[k].copy()
    for gs, (p1, p2) in zip(grads, powers):
      expected = ref.step(expected, states, gs[k], p1, p2, 0.01, 0.9, 0.999, 1e-7,
                          one_minus_beta=(np.float32(1 - 0.9), np.float32(1 - 0.999)))
    np.testing.assert_array_equal(np.asarray(var), expected)


def test_multi_tensor_op_refuses_a_corrupt_scale_before_any_write():
  from tf_adam_op import ops
  variables = [tf.Variable(np.ones((300,), np.float32)) for _ in range(2)]
  codes = [tf.Variable(np.zeros((300,), np.uint8)) for _ in range(4)]
  scales = [tf.Variable(np.ones((2,), np.float32)) for _ in range(4)]
  scales[3].assign([1.0, -2.0])
  before = [v.numpy() for v in variables + codes]
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"v_absmax\[1\]: block 1's scale is -2"):
    ops.resource_apply_adam_8bit_multi(
        [v.handle for v in variables], ([c.handle for c in codes[:2]], [s.handle for s in scales[:2]]),
        ([c.handle for c in codes[2:]], [s.handle for s in scales[2:]]), 0.9, 0.999, 0.01, 0.9,
        0.999, 1e-8, [np.ones((300,), np.float32)] * 2)
  for b, v in zip(before, variables + codes):
    np.testing.assert_array_equal(v.numpy(), b)


def test_multi_tensor_op_names_the_variable_of_a_corrupt_state_when_given_names():
  from tf_adam_op import ops
  variables = [tf.Variable(np.ones((300,), np.float32)) for _ in range(2)]
  codes = [tf.Variable(np.zeros((300,), np.uint8)) for _ in range(4)]
  scales = [tf.Variable(np.ones((2,), np.float32)) for _ in range(4)]
  scales[3].assign([1.0, -2.0])
  call = lambda names: ops.resource_apply_adam_8bit_multi(
      [v.handle for v in variables], ([c.handle for c in codes[:2]], [s.handle for s in scales[:2]]),
      ([c.handle for c in codes[2:]], [s.handle for s in scales[2:]]), 0.9, 0.999, 0.01, 0.9,
      0.999, 1e-8, [np.ones((300,), np.float32)] * 2, variable_names=names)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"the 8-bit states of 'second': v_absmax\[1\]: block 1's scale is -2"):
    call(["'first'", "'second'"])
  with pytest.raises(tf.errors.InvalidArgumentError, match="variable_names must be empty or name the 2"):
    call(["'first'"])


def _assert_refused_writing_nothing(step, state, message):
  """step() raises InvalidArgumentError matching `message`, and state() (arrays) is unchanged."""
  before = state()
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    step()
  for b, a in zip(before, state()):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_v1_single_8bit_group_names_the_variable_of_a_corrupt_state(mode):
  """A step whose 8-bit variables are one multi-tensor op has no step-wide check (the op checks
  every state before it writes): its error names the variable too, and nothing is written."""
  var = tf.Variable(np.ones(SHAPE, np.float32), name="my_weight")
  opt = tf_adam_op.AdamOptimizer(0.1, state_bits=8)

  def step():
    opt.apply_gradients([(tf.ones(SHAPE), var)])
  if mode == "function":
    step = tf.function(step)
  step()
  scales = opt.get_slot(var, "m_absmax")
  scales.assign(tf.tensor_scatter_nd_update(scales, [[2]], [-3.0]))
  state = lambda: [var.numpy()] + [p.numpy() for p in opt._get_beta_accumulators()] + [
      opt.get_slot(var, name).numpy() for name in opt.get_slot_names()]
  _assert_refused_writing_nothing(
      step, state, r"the 8-bit states of 'my_weight:0': m_absmax\[0\]: block 2's scale is -3")


@needs_keras_3
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_keras_single_8bit_group_names_the_variable_and_writes_nothing(mode):
  """Keras's step of one ResourceApplyAdam8bitMulti (every variable 8-bit, one dtype and device,
  no decay pass of Keras's) has no step-wide check, as v1's: the op's error names the variable,
  and neither the variables, their states nor `iterations` change."""
  import keras
  rng = np.random.default_rng(12)
  variables = [keras.Variable(rng.normal(size=SHAPE).astype(np.float32), name=f"w{i}")
               for i in range(2)]
  opt = tk.Adam(0.01, state_bits=8)

  def step():
    opt.apply_gradients([(tf.ones(SHAPE), v) for v in variables])
  if mode == "function":
    step = tf.function(step)
  step()
  _corrupt(opt.state_variables(variables[1])["m"][1])
  state = lambda: [np.asarray(v) for v in variables] + [int(opt.iterations)] + [
      np.asarray(x) for v in variables for pair in opt.state_variables(v).values() for x in pair]
  _assert_refused_writing_nothing(
      step, state, r"the 8-bit states of 'w1': m_absmax\[1\]: block 0's scale is -1")


@needs_keras_3
def test_keras_function_step_with_ema_and_a_corrupt_state_writes_no_average():
  """Keras's EMA averages every trainable variable, one without a gradient in the step too: in a
  failing step that write must wait for the check as the update does (an outside check found the
  average of such a variable written)."""
  import keras
  updated = keras.Variable(np.ones(SHAPE, np.float32), name="updated")
  idle = keras.Variable(np.ones(SHAPE, np.float32), name="idle")
  opt = tk.Adam(0.01, state_bits=8, use_ema=True)
  step = tf.function(lambda g: opt.apply([g, None], [updated, idle]))
  step(tf.fill(SHAPE, 0.5))
  idle.assign(idle * 3.0)
  _corrupt(opt.state_variables(updated)["m"][1])
  averages = [v for v in opt.variables if v.path.endswith("_average")]
  assert len(averages) == 2
  state = lambda: [np.asarray(v) for v in averages + [updated, idle]] + [int(opt.iterations)]
  for _ in range(3):  # by repetition too: the structure is checked below
    _assert_refused_writing_nothing(lambda: step(tf.fill(SHAPE, 0.5)), state,
                                    r"negative or infinite.*updated")


@needs_keras_3
@pytest.mark.parametrize("optimizer, options, checked", [
    ("Adam", {}, False), ("AdamW", {}, True), ("Adam", {"use_ema": True}, True)],
    ids=["Adam: one op", "AdamW: Keras's decay pass first", "EMA: writes after the op"])
def test_keras_function_step_orders_iterations_after_the_one_8bit_op(optimizer, options, checked):
  """Structural: without the step-wide check, `iterations` is advanced only after the update has
  run (a read after it, then Keras's write); with Keras's own decay pass before the update (AdamW
  in a graph) the step-wide check is there, and the update and `iterations` wait for it."""
  import keras
  variables = [keras.Variable(np.ones(SHAPE, np.float32)) for _ in range(2)]
  opt = getattr(tk, optimizer)(0.01, state_bits=8, **options)

  @tf.function
  def step():
    opt.apply_gradients([(tf.ones(SHAPE), v) for v in variables])
  graph = step.get_concrete_function().graph
  ops_of = lambda kind: [op for op in graph.get_operations() if op.type == kind]
  assert bool(ops_of("Check8bitScales")) == checked
  (update,) = ops_of("ResourceApplyAdam8bitMulti")
  (iterations_write,) = [op for op in ops_of("AssignVariableOp") + ops_of("AssignAddVariableOp")
                         if op.get_attr("dtype") == tf.int64]  # iterations: the only int64
  # What the write waits for: the update itself, or the check that every write of the step waits for.
  (waited_for,) = ops_of("Check8bitScales") if checked else (update,)
  assert waited_for in _control_and_data_inputs(iterations_write)
  if checked:
    assert waited_for in _control_and_data_inputs(update)


def _control_and_data_inputs(op):
  seen, stack = set(), [op]
  while stack:
    current = stack.pop()
    for parent in [t.op for t in current.inputs] + list(current.control_inputs):
      if parent not in seen:
        seen.add(parent)
        stack.append(parent)
  return seen


def test_v1_under_mirrored_strategy_equals_the_step_without_it():
  var0, grads = _data()
  results = []
  for strategy in (None, tf.distribute.MirroredStrategy(["/cpu:0"])):
    scope = strategy.scope() if strategy else tf.name_scope("plain")
    with scope:
      var = tf.Variable(var0)
      opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
    for g in grads:
      if strategy:
        strategy.run(lambda g=g: opt.apply_gradients([(tf.constant(g), var)]) and None)
      else:
        opt.apply_gradients([(tf.constant(g), var)])
    results.append(var.numpy())
  np.testing.assert_array_equal(results[1], results[0])


def test_v1_checkpoint_under_mirrored_strategy_restores_and_steps_on_exactly(tmp_path):
  """The 8-bit slots of a v1 optimizer under a strategy save and restore (into slots not yet
  created, by restore-on-create), and the restored run steps on as the uninterrupted one."""
  var0, grads = _data(steps=4)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])

  def step(opt, var, g):
    strategy.run(lambda: opt.apply_gradients([(tf.constant(g), var)]) and None)
  with strategy.scope():
    var = tf.Variable(var0)
    opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8, amsgrad=True)
  for g in grads[:2]:
    step(opt, var, g)
  path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / "ckpt"))
  for g in grads[2:]:
    step(opt, var, g)
  with strategy.scope():
    restored_var = tf.Variable(np.zeros_like(var0))
    restored_opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8, amsgrad=True)
    tf.train.Checkpoint(var=restored_var, opt=restored_opt).restore(path).expect_partial()
  for g in grads[2:]:
    step(restored_opt, restored_var, g)
  np.testing.assert_array_equal(restored_var.numpy(), var.numpy())
  for name in ("m", "v", "vhat"):
    for ours, theirs in zip(restored_opt.state_variables(restored_var)[name],
                            opt.state_variables(var)[name]):
      np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@needs_keras_3
def test_keras_checkpoint_under_mirrored_strategy_restores_and_fits_on_exactly(tmp_path):
  """A Keras model with 8-bit states trained by fit under a strategy: its checkpoint restores into
  a new model and optimizer under the strategy, which fit on to the uninterrupted run's bits."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(96, 80)).astype(np.float32), rng.normal(size=(96, 1)).astype(np.float32)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    model = _keras_model(8)
  model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, shuffle=False)
  path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
  model.fit(x[64:], y[64:], batch_size=32, epochs=1, verbose=0, shuffle=False)
  with strategy.scope():
    restored = _keras_model(8, seed=5)
    restored.optimizer.build(restored.trainable_variables)
  tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(path).assert_consumed()
  restored.fit(x[64:], y[64:], batch_size=32, epochs=1, verbose=0, shuffle=False)
  for ours, theirs in zip(restored.weights + restored.optimizer.variables,
                          model.weights + model.optimizer.variables):
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=ours.name)


def test_v1_checkpoint_restores_into_slots_not_yet_created(tmp_path):
  """The base class's restore-on-create asks for slots of var's shape: 8-bit slots get their own."""
  var0, grads = _data(steps=3)
  var = tf.Variable(var0)
  opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  opt.apply_gradients([(tf.constant(grads[0]), var)])
  path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / "ck"))
  opt.apply_gradients([(tf.constant(grads[1]), var)])
  restored_var = tf.Variable(np.zeros(SHAPE, np.float32))
  restored = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  tf.train.Checkpoint(var=restored_var, opt=restored).restore(path)
  restored.apply_gradients([(tf.constant(grads[1]), restored_var)])
  np.testing.assert_array_equal(restored_var.numpy(), var.numpy())


@pytest.mark.parametrize("make_optimizer", [
    lambda: tf_adam_op.AdamOptimizer(0.01, state_bits=8),
    lambda: tf_adam_op.AdamWOptimizer(1e-3, 0.01, state_bits=8)], ids=["adam", "adamw"])
def test_v1_saved_model_with_8bit_states_loads_and_steps(tmp_path, make_optimizer):
  """The loaded optimizer (its class's default state_bits) takes the saved 8-bit states: an
  outside check found AdamW's refused by the restore's check of the kind of states."""
  var0, grads = _data(steps=2)

  class Model(tf.Module):
    def __init__(self):
      self.var = tf.Variable(var0)
      self.opt = make_optimizer()

    @tf.function(input_signature=[tf.TensorSpec(SHAPE, tf.float32)])
    def train(self, grad):
      self.opt.apply_gradients([(grad, self.var)])
      return self.var.read_value()

  model = Model()
  model.train(tf.constant(grads[0]))
  tf.saved_model.save(model, str(tmp_path / "sm"))
  expected = model.train(tf.constant(grads[1])).numpy()
  loaded = tf.saved_model.load(str(tmp_path / "sm"))
  np.testing.assert_array_equal(loaded.train(tf.constant(grads[1])).numpy(), expected)


def _corrupt(scales):
  scales.assign(tf.tensor_scatter_nd_update(scales, [[0]], [-1.0]))


# The message of the step-wide check: a Check8bitScales assertion, or under XLA (no assertions) a
# Check8bitScaleValues every 8-bit update of the step waits for (checks.xla_scale_check).
_STEP_CHECK_MESSAGE = {
    "eager": r"negative or infinite.*\): block 0's scale is -1\.0$",  # eagerly: the block too
    "function": "negative or infinite",
    "xla": r"8-bit states of '[^']*' \([^)]*\): block 0's scale is -1, not a scale .*corrupt"}


@pytest.mark.parametrize("mode", [
    "function", pytest.param("xla", marks=needs_xla_kernels)])
@pytest.mark.parametrize("general_path", [False, True], ids=["fast path", "general path (fused=False)"])
def test_v1_graph_step_with_a_corrupt_scale_writes_nothing(mode, general_path):
  """The corrupt state is the second of three 8-bit variables: the first one's update must not
  have run (under XLA each 8-bit variable is an op of its own, in the order given)."""
  rng = np.random.default_rng(4)
  values = [rng.normal(size=s).astype(np.float32) for s in [(4096,), SHAPE, (10,), SHAPE]]
  variables = [tf.Variable(v) for v in values]
  opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8, fused=not general_path)

  @tf.function(jit_compile=mode == "xla")
  def step():
    opt.apply_gradients([(tf.ones_like(v), v) for v in variables])
  step()
  _corrupt(opt.get_slot(variables[1], "v_absmax"))
  before = [v.numpy() for v in variables] + [p.numpy() for p in opt._get_beta_accumulators()]
  with pytest.raises(tf.errors.InvalidArgumentError, match=_STEP_CHECK_MESSAGE[mode]):
    step()
  after = [v.numpy() for v in variables] + [p.numpy() for p in opt._get_beta_accumulators()]
  for b, a in zip(before, after):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_v1_step_under_mirrored_strategy_with_a_corrupt_scale_writes_nothing(mode):
  """Under a strategy the base class builds the step in the cross-replica context (merge_call):
  the scale check is made there too, before any update, naming the corrupt state."""
  rng = np.random.default_rng(5)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    variables = [tf.Variable(rng.normal(size=(64, 100)).astype(np.float32), name=f"w{i}")
                 for i in range(3)]
    opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  grads = [tf.constant(rng.normal(size=(64, 100)).astype(np.float32)) for _ in variables]

  def step():
    strategy.run(lambda: opt.apply_gradients(zip(grads, variables)) and None)
  if mode == "function":
    step = tf.function(step)
  step()
  _corrupt(opt.get_slot(variables[1], "v_absmax"))
  state = lambda: ([v.numpy() for v in variables]
                   + [p.numpy() for p in opt._get_beta_accumulators()]
                   + [opt.get_slot(v, s).numpy() for v in variables for s in opt.get_slot_names()])
  before = state()
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"negative or infinite.*w1:0.*" + ("block 0's scale is -1"
                                                             if mode == "eager" else "")):
    step()
  for b, a in zip(before, state()):
    np.testing.assert_array_equal(a, b)


@needs_xla_kernels
@pytest.mark.parametrize("family", ["v1", pytest.param("keras", marks=needs_keras_3),
                                    pytest.param("keras AdamW, NumPy beta", marks=needs_keras_3)])
def test_xla_step_under_a_strategy_with_a_corrupt_scale_writes_nothing(family):
  """Under a strategy (one replica: XLA compiles no step over several devices) the updates are
  built in its cross-replica context, another thread than the replica's: the scale check is made
  there too and every write waits for it (found in review: Keras's first 8-bit variable and
  `iterations` were written, every time; with a NumPy beta also Keras's own updates)."""
  import keras
  rng = np.random.default_rng(18)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    make = tf.Variable if family == "v1" else keras.Variable
    variables = [make(rng.normal(size=s).astype(np.float32), name=f"w{i}")
                 for i, s in enumerate([(4096,), SHAPE, (10,), SHAPE])]
    opt = (tf_adam_op.AdamOptimizer(0.01, state_bits=8) if family == "v1"
           else tk.Adam(0.01, state_bits=8) if family == "keras"
           else tk.AdamW(0.01, weight_decay=0.1, beta_1=np.float64(0.9), state_bits=8))
    global_step = tf.Variable(0, dtype=tf.int64)
  keyword = {"global_step": global_step} if family == "v1" else {}

  @tf.function(jit_compile=True)
  def step():
    def replica_step():
      opt.apply_gradients([(tf.ones(v.shape), v) for v in variables], **keyword)
    strategy.run(replica_step)
  step()
  not_after, written = outputs_not_after(step.experimental_get_compiler_ir()(stage="hlo"),
                                         "tf_adam_op_check_8bit_scales")
  assert written >= 15 and not_after == []
  _corrupt(opt.get_slot(variables[1], "v_absmax") if family == "v1"
           else opt.state_variables(variables[1])["v"][1])
  state = lambda: [np.asarray(v).tobytes() for v in [*variables, global_step] + list(
      opt.variables() if family == "v1" else opt.variables)]
  before = state()
  for _ in range(3):
    with pytest.raises(tf.errors.InvalidArgumentError, match=_STEP_CHECK_MESSAGE["xla"]):
      step()
    assert state() == before


@needs_keras_3
@pytest.mark.parametrize("mode", ["eager", "function", pytest.param("xla", marks=needs_xla_kernels)])
def test_keras_step_with_a_corrupt_scale_writes_nothing(mode):
  import keras
  rng = np.random.default_rng(4)
  variables = [keras.Variable(rng.normal(size=s).astype(np.float32))
               for s in [(4096,), SHAPE, (10,)]]
  opt = tk.Adam(0.01, state_bits=8)

  def step():
    opt.apply_gradients([(tf.ones(v.shape), v) for v in variables])
  if mode != "eager":
    step = tf.function(step, jit_compile=mode == "xla")
  step()
  _corrupt(opt.state_variables(variables[1])["v"][1])
  before = [np.asarray(v) for v in variables] + [int(opt.iterations)]
  with pytest.raises(tf.errors.InvalidArgumentError, match=_STEP_CHECK_MESSAGE[mode]):
    step()
  after = [np.asarray(v) for v in variables] + [int(opt.iterations)]
  for b, a in zip(before, after):
    np.testing.assert_array_equal(a, b)


def _optimizer(family, general_path=False):
  if family == "keras":
    return tk.Adam(0.01, state_bits=8)
  return tf_adam_op.AdamOptimizer(0.01, state_bits=8, fused=not general_path)


@pytest.mark.parametrize("mode", ["eager", "function", pytest.param("xla", marks=needs_xla_kernels)])
@pytest.mark.parametrize("family", ["v1", "v1 general path", pytest.param("keras",
                                                                           marks=needs_keras_3)])
def test_a_corrupt_state_the_step_does_not_read_does_not_stop_it(family, mode):
  """A variable whose gradient is None is not updated (stock and Keras skip it), so its states are
  not read: a corrupt scale there stops no mode's step (the check covers the updated variables),
  and the step's numbers are those of the same step without the corruption."""
  rng = np.random.default_rng(8)
  values = [rng.normal(size=SHAPE).astype(np.float32) for _ in range(2)]
  grad = tf.constant(rng.normal(size=SHAPE).astype(np.float32))
  results = []
  for corrupt in (False, True):
    make = tf.Variable
    if family == "keras":
      import keras
      make = keras.Variable
    updated, skipped = make(values[0]), make(values[1])
    opt = _optimizer(family.split()[0], general_path="general" in family)
    opt.build([updated, skipped])
    if corrupt:
      _corrupt(opt.state_variables(skipped)["v"][1])

    def step():
      opt.apply_gradients([(grad, updated), (None, skipped)])
    if mode != "eager":
      step = tf.function(step, jit_compile=mode == "xla")
    step()
    step()
    np.testing.assert_array_equal(np.asarray(skipped), values[1])
    results.append([np.asarray(updated)] + [np.asarray(x) for pair in
                                            opt.state_variables(updated).values() for x in pair])
  for with_corruption, without in zip(results[1], results[0]):
    np.testing.assert_array_equal(with_corruption, without)


def test_v1_build_then_copy_states_into_a_fresh_optimizer():
  var0, grads = _data(steps=1)
  var = tf.Variable(var0)
  opt32 = tf_adam_op.AdamOptimizer(0.01)
  opt32.apply_gradients([(tf.constant(grads[0]), var)])
  opt8 = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  opt8.build([var])
  state_8bit.copy_states(opt32, opt8, [var])
  codes, absmax = state_8bit.quantize(opt32.get_slot(var, "m").numpy(), signed=True)
  np.testing.assert_array_equal(opt8.get_slot(var, "m_codes").numpy(), codes)
  np.testing.assert_array_equal(opt8.get_slot(var, "m_absmax").numpy(), absmax)


@pytest.mark.parametrize("family", ["v1", pytest.param("keras", marks=needs_keras_3)])
def test_float64_states_convert_without_rounding_to_float32(family):
  """A float64 variable's states are float64: float states copy exactly, 8-bit ones decode in
  float64 (as the kernel does) and encode as the kernel encodes them, so the float-state optimizer
  stepped from the decoded states ends on the codes the 8-bit step writes, and on its variable."""
  rng = np.random.default_rng(11)
  var0 = rng.normal(size=SHAPE)  # float64
  grads = [rng.normal(size=SHAPE) for _ in range(3)]
  make = tf.Variable
  if family == "keras":
    import keras
    make = keras.Variable

  def optimizer(bits):
    return (tf_adam_op.AdamOptimizer(0.01, state_bits=bits) if family == "v1"
            else tk.Adam(0.01, state_bits=bits))
  # Float states to float states: exact.
  var = make(var0)
  source, target = optimizer(32), optimizer(32)
  source.apply_gradients([(tf.constant(grads[0]), var)])
  target.build([var])
  state_8bit.copy_states(source, target, [var])
  for name, state in state_8bit.state_values(source, var).items():
    assert state.dtype == np.float64
    np.testing.assert_array_equal(state_8bit.state_values(target, var)[name], state)
  # 8-bit states: two steps, then the next from the decoded states in a float-state optimizer.
  var8, var32 = make(var0), make(var0)
  opt8, opt32 = optimizer(8), optimizer(32)
  for g in grads[:2]:
    opt8.apply_gradients([(tf.constant(g), var8)])
  var32.assign(np.asarray(var8))
  opt32.build([var32])
  for name, value in state_8bit.state_values(opt8, var8).items():  # (two variables: by hand)
    assert value.dtype == np.float64
    opt32.state_variables(var32)[name].assign(value)
  if family == "keras":
    opt32.iterations.assign(opt8.iterations)
  else:
    for power8, power32 in zip(opt8._get_beta_accumulators(), opt32._get_beta_accumulators()):
      power32.assign(power8)
  opt8.apply_gradients([(tf.constant(grads[2]), var8)])
  opt32.apply_gradients([(tf.constant(grads[2]), var32)])
  np.testing.assert_array_equal(np.asarray(var8), np.asarray(var32))
  for name, (codes, absmax) in opt8.state_variables(var8).items():
    expected = state_8bit.quantize(np.asarray(opt32.state_variables(var32)[name]),
                                   signed=name == "m")
    np.testing.assert_array_equal(np.asarray(codes), expected[0])
    np.testing.assert_array_equal(np.asarray(absmax), expected[1])


def test_codec_and_options_refuse_what_they_cannot_mean():
  with pytest.raises(ValueError, match="state_bits must be 32"):
    tf_adam_op.AdamOptimizer(state_bits=8.0)
  with pytest.raises(ValueError, match="cannot hold negative values"):
    state_8bit.quantize(np.array([-1.0, 0.5]), signed=False)


@needs_xla_kernels
@pytest.mark.parametrize("family", ["v1", pytest.param("keras", marks=needs_keras_3)])
def test_xla_step_with_a_sparse_float_update_and_a_corrupt_scale_writes_nothing(family):
  """Under XLA a step's sparse updates of float-state variables are not ordered after its 8-bit
  ones by anything else: they wait for the scale check too."""
  rng = np.random.default_rng(6)
  make = tf.Variable
  if family == "keras":
    import keras
    make = keras.Variable
  embedding = make(rng.normal(size=(64, 8)).astype(np.float32))  # 512 elements: float states
  big = make(rng.normal(size=SHAPE).astype(np.float32))  # 8-bit states
  opt = (tf_adam_op.AdamOptimizer(0.01, state_bits=8) if family == "v1"
         else tk.Adam(0.01, state_bits=8))
  rows = tf.IndexedSlices(tf.ones([3, 8]), tf.constant([1, 5, 9]), tf.constant([64, 8]))

  @tf.function(jit_compile=True)
  def step():
    opt.apply_gradients([(rows, embedding), (tf.ones(SHAPE), big)])
  step()
  scales = (opt.get_slot(big, "v_absmax") if family == "v1"
            else opt.state_variables(big)["v"][1])
  _corrupt(scales)
  state = lambda: [np.asarray(embedding), np.asarray(big)] + (
      [p.numpy() for p in opt._get_beta_accumulators()] if family == "v1"
      else [int(opt.iterations)])
  before = state()
  with pytest.raises(tf.errors.InvalidArgumentError, match=_STEP_CHECK_MESSAGE["xla"]):
    step()
  for b, a in zip(before, state()):
    np.testing.assert_array_equal(a, b)


@needs_xla_kernels
@needs_keras_3
def test_keras_adamw_xla_step_with_a_corrupt_scale_leaves_a_variable_given_twice_undecayed():
  """Keras decays a variable given twice in its own pass (twice, before the updates); under XLA
  that pass reads its learning rate after the step's scale check, so a refused step leaves it."""
  import keras
  rng = np.random.default_rng(14)
  twice, other = (keras.Variable(rng.normal(size=SHAPE).astype(np.float32), name=name)
                  for name in ("twice", "other"))
  opt = tk.AdamW(0.01, weight_decay=0.1, state_bits=8)

  @tf.function(jit_compile=True)
  def step():
    opt.apply_gradients([(tf.ones(SHAPE), twice), (tf.ones(SHAPE), other),
                         (tf.ones(SHAPE), twice)])
  step()
  # Structural: each write of Keras's decay pass (AssignSubVariableOp) has the check among its
  # inputs' inputs (XLA's schedule happened to run it first without that, too).
  graph = step.get_concrete_function().graph
  decays = [op for op in graph.get_operations() if op.type == "AssignSubVariableOp"]
  assert len(decays) == 2
  for op in decays:
    assert "Check8bitScaleValues" in {o.type for o in graph_ancestors(op)}
  _corrupt(opt.state_variables(other)["v"][1])
  state = lambda: [np.asarray(v).tobytes() for v in [twice, other, *opt.variables]]
  before = state()
  for _ in range(3):
    with pytest.raises(tf.errors.InvalidArgumentError, match=_STEP_CHECK_MESSAGE["xla"]):
      step()
    assert state() == before


def _xla_step_with_a_sparse_update(family, rng):
  """(step(indices), state(), opt, variables): a v1 or Keras step under XLA of two dense 8-bit
  variables and an embedding (float states) whose IndexedSlices rows are the step's argument
  (Keras's with lazy rows, whose indices must be in range: Keras's own rule drops the row of an
  index out of range under XLA, and so does ours)."""
  make = tf.Variable
  if family == "keras":
    import keras
    make = keras.Variable
  embedding = make(rng.normal(size=(64, 8)).astype(np.float32))
  dense = [make(rng.normal(size=s).astype(np.float32)) for s in (SHAPE, (4096 + 64, 4))]
  opt = (tf_adam_op.AdamOptimizer(0.01, state_bits=8) if family == "v1"
         else tk.Adam(0.01, state_bits=8, lazy=True))

  @tf.function(jit_compile=True)
  def step(indices):
    rows = tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([64, 8]))
    opt.apply_gradients([(tf.ones(SHAPE), dense[0]), (rows, embedding),
                         (tf.ones([4096 + 64, 4]), dense[1])])
  state = lambda: [np.asarray(v) for v in [embedding, *dense]] + (
      [p.numpy() for p in opt._get_beta_accumulators()] if family == "v1"
      else [np.asarray(v) for v in opt.variables])
  return step, state, opt, [embedding, *dense]


@needs_xla_kernels
@pytest.mark.parametrize("family", ["v1", pytest.param("keras", marks=needs_keras_3)])
def test_xla_step_whose_sparse_update_fails_writes_no_8bit_variable(family):
  """A sparse index out of range is found by the sparse op's custom call while the step runs: the
  dense 8-bit updates wait for it by data (as the float ones do), so none is written. Repeated:
  without that data dependency XLA was free to run them first (it did, every time)."""
  step, state, _, _ = _xla_step_with_a_sparse_update(family, np.random.default_rng(8))
  step(tf.constant([1, 2]))
  before = state()
  for _ in range(5):
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range|not in"):
      step(tf.constant([1, 99]))
    for b, a in zip(before, state()):
      np.testing.assert_array_equal(a, b)


@needs_xla_kernels
@pytest.mark.parametrize("family", ["v1", pytest.param("keras", marks=needs_keras_3)])
def test_xla_step_with_a_sparse_update_groups_its_dense_8bit_variables_after_it(family):
  """Structural, needing no luck: in the compiled step the dense 8-bit variables take one
  ResourceApplyAdam8bitMultiUnpacked (v1's general path too, which a step with IndexedSlices
  takes), and that op's custom call has the sparse op's among its inputs' inputs."""
  step, _, _, _ = _xla_step_with_a_sparse_update(family, np.random.default_rng(8))
  indices = tf.constant([1, 2])
  types = [op.type for op in step.get_concrete_function(indices).graph.get_operations()]
  assert types.count("ResourceApplyAdam8bitMultiUnpacked") == 1, types
  assert "ResourceApplyAdam8bit" not in types, types
  not_after, sparse_calls = calls_not_after(step.experimental_get_compiler_ir(indices)(
      stage="hlo"), "tf_adam_op_dense_adam_8bit", "tf_adam_op_sparse_adam")
  assert sparse_calls == 1 and not_after == []


def _updates_not_waiting_for_the_check(hlo):
  """The tf_adam_op update custom calls of an XLA step's HLO (its entry computation) that do not
  depend, through their operands, on the step's Check8bitScaleValues call; and the check's count."""
  operands, targets = entry_calls(hlo)
  checks = {n for n, t in targets.items() if t == "tf_adam_op_check_8bit_scales"}
  updates = [n for n, t in targets.items() if not t.startswith("tf_adam_op_check_")]  # not checks
  return ([n for n in updates if not checks & ancestors(operands, n)], len(checks),
          len(updates))


@needs_xla_kernels
@pytest.mark.parametrize("family", ["v1 fast path", "v1 general path",
                                    pytest.param("keras", marks=needs_keras_3),
                                    pytest.param("keras, NumPy beta", marks=needs_keras_3)])
def test_xla_step_every_update_waits_for_the_scale_check(family):
  """Structural, needing no luck with XLA's schedule: in the compiled step every update (8-bit or
  not, dense or sparse) and every value it writes has the scale check among its inputs' inputs, so
  a corrupt scale stops the step before any write however XLA orders it. With a NumPy float64
  beta Keras's own update_step updates the float-state variables (docs/keras.md): they wait too."""
  rng = np.random.default_rng(7)
  make = tf.Variable
  if family == "keras":
    import keras
    make = keras.Variable
  shapes = [(64, 8), SHAPE, (10,), SHAPE, (4096 + 64, 4)]  # float, 8-bit, float, 8-bit, 8-bit
  variables = [make(rng.normal(size=s).astype(np.float32)) for s in shapes]
  opt = (tk.Adam(0.01, state_bits=8) if family == "keras"
         else tk.Adam(0.01, beta_1=np.float64(0.9), state_bits=8) if family.startswith("keras")
         else tf_adam_op.AdamOptimizer(0.01, state_bits=8, fused=family == "v1 fast path"))
  rows = lambda shape: tf.IndexedSlices(tf.ones([3, shape[1]]), tf.constant([1, 5, 9]),
                                        tf.constant(shape))
  grads = [rows(shapes[0]), tf.ones(SHAPE), tf.ones([10]), tf.ones(SHAPE), rows(shapes[4])]
  if "NumPy" in family:  # no sparse op of ours, which Keras's updates would wait for anyway
    grads[4] = tf.ones(shapes[4])

  @tf.function(jit_compile=True)
  def step():
    opt.apply_gradients(zip(grads, variables))
  step()
  hlo = step.experimental_get_compiler_ir()(stage="hlo")
  not_waiting, checks, updates = _updates_not_waiting_for_the_check(hlo)
  assert checks == 1 and updates >= (1 if "NumPy" in family else 4), (checks, updates)
  assert not_waiting == []
  not_after, written = outputs_not_after(hlo, "tf_adam_op_check_8bit_scales")
  assert written >= 15 and not_after == []
