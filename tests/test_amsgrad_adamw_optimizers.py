"""AdamOptimizer(amsgrad=True) and AdamWOptimizer against stock-built references, bit for bit over
20+ steps: StockAmsgrad (stock Adam on stock's ApplyAdamWithAmsgrad kernel) and ContribAdamW
(contrib's decoupled weight decay over stock Adam), see stock_variants.py; and the NumPy rule where
stock has nothing (ref variables with AMSGrad, lazy sparse). Every mode: eager (fast path),
tf.function, TF1 sessions with ref and resource variables, dense, sparse and multi-tensor groups."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_bitwise_equal, random_grads
from numpy_reference import sparse_variant_step, variant_step
from tf_adam_op.bench.stock_variants import ContribAdamW, StockAmsgrad
import tf_adam_op

STEPS = 21
FLOAT_DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
HYPER = dict(learning_rate=0.02, beta1=0.8, beta2=0.99, epsilon=1e-7)
# As the optimizers hold them (float32 tensors, cast to the compute dtype), for the NumPy rule.
FLOAT32_HYPER = [np.float32(x) for x in HYPER.values()]

# name -> (ours, stock reference, kwargs); the weight decay is positional for both AdamWs.
PAIRS = {
    "amsgrad": (lambda **kw: tf_adam_op.AdamOptimizer(amsgrad=True, **kw), StockAmsgrad),
    "adamw": (lambda **kw: tf_adam_op.AdamWOptimizer(0.03, **kw), lambda **kw: ContribAdamW(0.03, **kw)),
}


def _slots(opt, var):
  names = ["m", "v"] + (["vhat"] if "vhat" in opt.get_slot_names() else [])
  return [opt.get_slot(var, n) for n in names]


def _state(opt, variables):
  return [x.numpy() for var in variables for x in [var, *_slots(opt, var)]] + [
      p.numpy() for p in opt._get_beta_accumulators()]


def _names(n):
  return [f"{i}" for i in range(n)]


def _eager(make, inits, grads, function=False, **kwargs):
  variables = [tf.Variable(x) for x in inits]
  opt = make(**HYPER, **kwargs)

  def step(gs):
    opt.apply_gradients(zip(gs, variables))

  if function:
    step = tf.function(step)
  for gs in grads:
    step([tf.constant(g) for g in gs])
  return _state(opt, variables)


def _inits_and_grads(rng, dtypes):
  shapes = [(31, 7), (5,), (1,), (64, 64)]
  inits = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
  grads = [[rng.standard_normal(x.shape).astype(x.dtype) for x in inits] for _ in range(STEPS)]
  return inits, grads


@pytest.mark.parametrize("function", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("pair", PAIRS)
@FLOAT_DTYPES
def test_dense_multi_tensor_steps_equal_stock(rng, dtype, pair, function):
  ours, stock = PAIRS[pair]
  inits, grads = _inits_and_grads(rng, [dtype] * 4)
  a = _eager(ours, inits, grads, function)
  b = _eager(stock, inits, grads, function)
  assert_bitwise_equal(a, b, _names(len(a)))


@pytest.mark.parametrize("pair", PAIRS)
def test_mixed_dtypes_and_devices_group_and_equal_stock(rng, pair):
  ours, stock = PAIRS[pair]
  inits, grads = _inits_and_grads(rng, [np.float32, np.float64, np.float32, np.float64])
  results = []
  for make in (ours, stock):
    with tf.device("/cpu:1"):
      other = tf.Variable(inits[0])
    variables = [tf.Variable(x) for x in inits] + [other]
    opt = make(**HYPER)
    for gs in grads:
      opt.apply_gradients(zip([tf.constant(g) for g in gs + [gs[0]]], variables))
    results.append(_state(opt, variables))
  assert_bitwise_equal(*results, _names(len(results[0])))


# Stock has no AMSGrad kernel for ref variables: test_tf1_ref_variables_amsgrad_follow_the_rule.
@pytest.mark.parametrize("pair, use_resource", [("amsgrad", True), ("adamw", True), ("adamw", False)],
                         ids=["amsgrad-resource", "adamw-resource", "adamw-ref"])
@FLOAT_DTYPES
def test_tf1_session_equals_stock(rng, dtype, pair, use_resource):
  ours, stock = PAIRS[pair]
  inits, grads = _inits_and_grads(rng, [dtype] * 4)
  results = []
  for make in (ours, stock):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
      variables = [tf.compat.v1.Variable(x, use_resource=use_resource) for x in inits]
      placeholders = [tf.compat.v1.placeholder(dtype, x.shape) for x in inits]
      global_step = tf.compat.v1.train.get_or_create_global_step()
      opt = make(**HYPER)
      train = opt.apply_gradients(zip(placeholders, variables), global_step=global_step)
      session.run(tf.compat.v1.global_variables_initializer())
      for gs in grads:
        session.run(train, dict(zip(placeholders, gs)))
      fetch = [x for var in variables for x in [var, *_slots(opt, var)]]
      results.append(session.run(fetch + list(opt._get_beta_accumulators())))
      assert session.run(global_step) == STEPS
  assert_bitwise_equal(*results, _names(len(results[0])))


@FLOAT_DTYPES
def test_tf1_ref_variables_amsgrad_follow_the_rule(rng, dtype):
  init = rng.standard_normal((9, 4)).astype(dtype)
  grads = random_grads(rng, init.shape, dtype, STEPS)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var = tf.compat.v1.Variable(init, use_resource=False)
    grad = tf.compat.v1.placeholder(dtype, init.shape)
    opt = tf_adam_op.AdamWOptimizer(0.01, amsgrad=True, **HYPER)
    train = opt.apply_gradients([(grad, var)])
    session.run(tf.compat.v1.global_variables_initializer())
    for g in grads:
      session.run(train, {grad: g})
    actual = session.run([var, *_slots(opt, var)])
  state = [init, np.zeros_like(init), np.zeros_like(init), np.zeros_like(init)]
  b1p, b2p = np.float32(0.8), np.float32(0.99)
  for g in grads:
    state = variant_step(*state, g, b1p, b2p, *FLOAT32_HYPER, weight_decay=0.01)  # in var's dtype
    b1p, b2p = b1p * np.float32(0.8), b2p * np.float32(0.99)
  assert_bitwise_equal(actual, state, ["var", "m", "v", "vhat"])


def _sparse_steps(rng, dtype, rows=30):
  steps = [(rng.integers(0, rows, 5), rng.standard_normal((5, 3)).astype(dtype)) for _ in range(STEPS)]
  steps[0] = (np.array([2, 2, 7, 2, 0]), steps[0][1])  # a repeated row: summed, decayed once
  return steps


def _sparse_run(make, table, steps, mode):
  """The IndexedSlices steps through `mode`: eager, tf_function, session_resource, session_ref."""
  if mode in ("eager", "tf_function"):
    var = tf.Variable(table)
    opt = make()

    def step(ids, values):
      opt.apply_gradients([(tf.IndexedSlices(values, ids, table.shape), var)])

    if mode == "tf_function":
      step = tf.function(step)
    for ids, values in steps:
      step(tf.constant(ids), tf.constant(values))
    return [x.numpy() for x in [var, *_slots(opt, var)]]
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var = tf.compat.v1.Variable(table, use_resource=mode == "session_resource")
    ids = tf.compat.v1.placeholder(tf.int64, [None])
    values = tf.compat.v1.placeholder(table.dtype, [None, 3])
    opt = make()
    train = opt.apply_gradients([(tf.IndexedSlices(values, ids, table.shape), var)])
    session.run(tf.compat.v1.global_variables_initializer())
    for step_ids, step_values in steps:
      session.run(train, {ids: step_ids, values: step_values})
    return session.run([var, *_slots(opt, var)])


def _sparse_rule(table, steps, amsgrad, decay, lazy):
  state = [table, *(np.zeros_like(table) for _ in range(3))]
  if not amsgrad:
    state[3] = None
  b1p, b2p = np.float32(0.8), np.float32(0.99)
  for ids, values in steps:
    state = sparse_variant_step(*state, values, ids, b1p, b2p, *FLOAT32_HYPER, lazy=lazy,
                                weight_decay=decay)  # a number: in var's dtype, as contrib's
    b1p, b2p = b1p * np.float32(0.8), b2p * np.float32(0.99)
  return [x for x in state if x is not None]


# Stock has no sparse AMSGrad and TF 2.21 no AdamW: the reference is the published rule in NumPy.
# "kept": AdamW with the variable outside decay_var_list.
@pytest.mark.parametrize("lazy", [False, True], ids=["stock_rule", "lazy"])
@pytest.mark.parametrize("variant", ["amsgrad", "adamw", "adamw_kept", "adamw_amsgrad"])
@pytest.mark.parametrize("mode", ["eager", "tf_function", "session_resource", "session_ref"])
@FLOAT_DTYPES
def test_sparse_steps_follow_the_rule(rng, dtype, mode, variant, lazy):
  table = rng.standard_normal((30, 3)).astype(dtype)
  steps = _sparse_steps(rng, dtype)
  amsgrad = "amsgrad" in variant
  decay = 0.03 if variant in ("adamw", "adamw_amsgrad") else None

  def make():
    if variant == "amsgrad":
      return tf_adam_op.AdamOptimizer(amsgrad=True, lazy=lazy, **HYPER)
    kept = [] if decay else [tf.compat.v1.Variable(1.0, use_resource=True)]
    return tf_adam_op.AdamWOptimizer(0.03, amsgrad=amsgrad, lazy=lazy, decay_var_list=kept,
                                     **HYPER)

  expected = _sparse_rule(table, steps, amsgrad, decay, lazy)
  assert_bitwise_equal(_sparse_run(make, table, steps, mode), expected, ["var", "m", "v", "vhat"])


@pytest.mark.parametrize("decays", [True, False], ids=["decays", "kept"])
@FLOAT_DTYPES
def test_adamw_sparse_equals_contribs_eagerly(rng, dtype, decays):
  """Eager runs contrib's composition as written, as the rule is: bit for bit. (In a graph grappler
  may rewrite contrib's v term, g * g * (1 - beta2), depending on the graph; our op keeps the
  published order there, which the test above checks.)"""
  table = rng.standard_normal((30, 3)).astype(dtype)
  steps = _sparse_steps(rng, dtype)
  results = []
  for cls in (tf_adam_op.AdamWOptimizer, ContribAdamW):
    make = lambda: cls(0.03, decay_var_list=[] if decays else [tf.Variable(1.0)], **HYPER)
    results.append(_sparse_run(make, table, steps, "eager"))
  assert_bitwise_equal(*results, ["var", "m", "v"])


# --- the weight decay as a tensor, a callable, a schedule; decay_var_list -------------------------

@FLOAT_DTYPES
def test_weight_decay_callable_is_reevaluated_every_eager_step(rng, dtype):
  inits, grads = _inits_and_grads(rng, [dtype] * 4)
  results = []
  for cls in (tf_adam_op.AdamWOptimizer, ContribAdamW):
    step = [0]
    variables = [tf.Variable(x) for x in inits]
    opt = cls(lambda: 0.05 * 0.8**step[0], **HYPER)
    for gs in grads:
      opt.apply_gradients(zip([tf.constant(g) for g in gs], variables))
      step[0] += 1
    results.append(_state(opt, variables))
  assert_bitwise_equal(*results, _names(len(results[0])))
  constant = _eager(lambda **kw: tf_adam_op.AdamWOptimizer(0.05, **kw), inits, grads)
  assert not np.array_equal(constant[0], results[0][0])  # the callable really was re-read


@FLOAT_DTYPES
def test_weight_decay_tensor_variable_in_tf_function(rng, dtype):
  inits, grads = _inits_and_grads(rng, [dtype] * 4)
  results = []
  for cls in (tf_adam_op.AdamWOptimizer, ContribAdamW):
    decay = tf.Variable(0.1)
    variables = [tf.Variable(x) for x in inits]
    opt = cls(lambda: decay, **HYPER)

    @tf.function
    def step(gs):
      opt.apply_gradients(zip(gs, variables))

    for i, gs in enumerate(grads):
      decay.assign(0.1 / (1 + i))
      step([tf.constant(g) for g in gs])
    results.append(_state(opt, variables) + [step.experimental_get_tracing_count()])
  assert_bitwise_equal(*results, _names(len(results[0])))  # the tracing counts too


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_weight_decay_schedule_on_global_step_in_tf1(rng, use_resource):
  inits, grads = _inits_and_grads(rng, [np.float32] * 4)
  results = []
  for cls in (tf_adam_op.AdamWOptimizer, ContribAdamW):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
      global_step = tf.compat.v1.train.get_or_create_global_step()
      lr = tf.compat.v1.train.exponential_decay(0.05, global_step, 3, 0.7)
      decay = 1e-2 * tf.compat.v1.train.exponential_decay(1.0, global_step, 3, 0.7)
      variables = [tf.compat.v1.Variable(x, use_resource=use_resource) for x in inits]
      loss = sum(tf.reduce_sum(tf.square(v) * tf.constant(g[0], v.dtype.base_dtype))
                 for v, g in zip(variables, zip(*grads)))
      opt = cls(decay, learning_rate=lr)
      train = opt.minimize(loss, global_step=global_step)
      session.run(tf.compat.v1.global_variables_initializer())
      for _ in range(STEPS):
        session.run(train)
      fetch = [x for var in variables for x in [var, *_slots(opt, var)]]
      results.append(session.run(fetch))
  assert_bitwise_equal(*results, _names(len(results[0])))


@pytest.mark.parametrize("where", ["constructor", "apply_gradients", "minimize"])
def test_decay_var_list_limits_the_decay(rng, where):
  inits, grads = _inits_and_grads(rng, [np.float32] * 4)
  results = []
  for cls in (tf_adam_op.AdamWOptimizer, ContribAdamW):
    variables = [tf.Variable(x) for x in inits]
    chosen = variables[::2]
    kwargs = dict(decay_var_list=chosen) if where == "constructor" else {}
    opt = cls(0.05, **HYPER, **kwargs)
    for gs in grads:
      pairs = list(zip([tf.constant(g) for g in gs], variables))
      if where == "apply_gradients":
        opt.apply_gradients(pairs, decay_var_list=chosen) if cls is not ContribAdamW else (
            setattr(opt, "_decay_var_list", chosen), opt.apply_gradients(pairs))
      elif where == "minimize":
        loss = lambda: sum(tf.reduce_sum(v * g) for g, v in pairs)
        if cls is ContribAdamW:
          opt._decay_var_list = chosen
          opt.minimize(loss, var_list=variables)
        else:
          opt.minimize(loss, var_list=variables, decay_var_list=chosen)
      else:
        opt.apply_gradients(pairs)
    results.append(_state(opt, variables))
  assert_bitwise_equal(*results, _names(len(results[0])))
  # ... and it mattered: with every variable decaying, the odd ones end elsewhere.
  everything = _eager(lambda **kw: tf_adam_op.AdamWOptimizer(0.05, **kw), inits, grads)
  if where != "minimize":
    assert not np.array_equal(everything[3], results[0][3])


def test_a_calls_empty_decay_var_list_decays_every_variable(rng):
  inits, _ = _inits_and_grads(rng, [np.float32] * 4)
  variables = [tf.Variable(x) for x in inits]
  opt = tf_adam_op.AdamWOptimizer(0.05, **HYPER, decay_var_list=variables[:1])
  with opt._decaying([]):
    assert all(opt._decays(v) for v in variables)  # as contrib's empty list: all of them
  assert not opt._decays(variables[1])


def test_float64_adamw_uses_the_python_number_as_contrib_did():
  """contrib's `weight_decay * var` converts 0.003 to float64 for a float64 variable."""
  results = []
  for cls in (tf_adam_op.AdamWOptimizer, ContribAdamW):
    var = tf.Variable([1.0, -2.0], dtype=tf.float64)
    cls(0.003, 0.01).apply_gradients([(tf.constant([0.5, 0.25], tf.float64), var)])
    results.append([var.numpy()])
  assert_bitwise_equal(*results, ["var"])
  expected = variant_step(np.array([1.0, -2.0]), np.zeros(2), np.zeros(2), None,
                          np.array([0.5, 0.25]), np.float32(0.9), np.float32(0.999),
                          np.float32(0.01), np.float32(0.9), np.float32(0.999), np.float32(1e-8),
                          weight_decay=0.003)[0]
  assert_bitwise_equal(results[0], [expected], ["var"])


def test_a_call_without_decay_var_list_falls_back_to_the_constructors(rng):
  inits, grads = _inits_and_grads(rng, [np.float32] * 4)
  variables = [tf.Variable(x) for x in inits]
  opt = tf_adam_op.AdamWOptimizer(0.05, **HYPER, decay_var_list=variables[:1])
  assert opt._decays(variables[0]) and not opt._decays(variables[1])
  opt.apply_gradients(zip([tf.constant(g) for g in grads[0]], variables),
                      decay_var_list=variables[1:2])
  assert opt._decays(variables[0]) and not opt._decays(variables[1])  # the call's list is gone


# --- AdamW and AMSGrad with the rest of TF ---------------------------------------------------------

@pytest.mark.parametrize("pair", PAIRS)
def test_tf_function_orders_the_step_with_other_ops_on_the_variables(rng, pair):
  """assign / read of the same variables before and after the step, as stock orders them."""
  ours, stock = PAIRS[pair]
  inits, grads = _inits_and_grads(rng, [np.float32] * 4)
  results = []
  for make in (ours, stock):
    variables = [tf.Variable(x) for x in inits]
    opt = make(**HYPER)

    @tf.function
    def step(gs):
      variables[0].assign_add(tf.ones_like(variables[0]))
      opt.apply_gradients(zip(gs, variables))
      read = variables[0].read_value()
      variables[1].assign(variables[1] * 0.5)
      return read

    reads = [step([tf.constant(g) for g in gs]).numpy() for gs in grads[:6]]
    results.append(reads + _state(opt, variables))
  assert_bitwise_equal(*results, _names(len(results[0])))


def test_bad_weight_decay_is_a_value_error_and_changes_nothing(rng):
  with pytest.raises(ValueError, match="weight_decay must be >= 0, got -0.1"):
    tf_adam_op.AdamWOptimizer(-0.1)
  with pytest.raises(ValueError, match="weight_decay must be >= 0, got nan"):
    tf_adam_op.AdamWOptimizer(float("nan"))
  var = tf.Variable(rng.standard_normal(5).astype(np.float32))
  before = var.numpy()
  decay = [0.1]
  opt = tf_adam_op.AdamWOptimizer(lambda: decay[0], amsgrad=True)
  opt.apply_gradients([(tf.ones(5), var)])
  state = [var.numpy(), *(s.numpy() for s in _slots(opt, var))]
  decay[0] = -1.0
  with pytest.raises(ValueError, match="weight_decay must be >= 0, got -1.0"):
    opt.apply_gradients([(tf.ones(5), var)])
  assert_bitwise_equal([var.numpy(), *(s.numpy() for s in _slots(opt, var))], state,
                       ["var", "m", "v", "vhat"])
  assert not np.array_equal(before, state[0])


def test_amsgrad_off_keeps_the_checkpoint_names(tmp_path, rng):
  """Without amsgrad nothing new is saved; with it, vhat is a slot like m and v (tf_keras's name)."""
  def keys(opt_cls, **kwargs):
    var = tf.Variable(rng.standard_normal(3).astype(np.float32))
    opt = opt_cls(**kwargs)
    opt.apply_gradients([(tf.ones(3), var)])
    path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / opt_cls.__name__))
    return sorted(k for k, _ in tf.train.list_variables(path) if "OBJECT_GRAPH" not in k)

  stock = keys(tf.compat.v1.train.AdamOptimizer)
  assert keys(tf_adam_op.AdamOptimizer) == stock
  with_vhat = keys(tf_adam_op.AdamOptimizer, amsgrad=True)
  assert set(with_vhat) - set(stock) == {"var/.OPTIMIZER_SLOT/opt/vhat/.ATTRIBUTES/VARIABLE_VALUE"}
  assert keys(StockAmsgrad) == with_vhat


@pytest.mark.parametrize("pair", PAIRS)
def test_save_load_save_continues_bit_for_bit(tmp_path, rng, pair):
  ours, _ = PAIRS[pair]
  inits, grads = _inits_and_grads(rng, [np.float32] * 4)
  straight = _eager(ours, inits, grads)
  variables = [tf.Variable(x) for x in inits]
  opt = ours(**HYPER)
  half = STEPS // 2
  for gs in grads[:half]:
    opt.apply_gradients(zip([tf.constant(g) for g in gs], variables))
  path = tf.train.Checkpoint(v=variables, opt=opt).save(str(tmp_path / "first"))
  restored_vars = [tf.Variable(np.zeros_like(x)) for x in inits]
  restored = ours(**HYPER)
  checkpoint = tf.train.Checkpoint(v=restored_vars, opt=restored)
  checkpoint.restore(path)
  for gs in grads[half:half + 3]:
    restored.apply_gradients(zip([tf.constant(g) for g in gs], restored_vars))
  path = checkpoint.save(str(tmp_path / "second"))
  again_vars = [tf.Variable(np.zeros_like(x)) for x in inits]
  again = ours(**HYPER)
  tf.train.Checkpoint(v=again_vars, opt=again).restore(path)
  for gs in grads[half + 3:]:
    again.apply_gradients(zip([tf.constant(g) for g in gs], again_vars))
  assert_bitwise_equal(_state(again, again_vars), straight, _names(len(straight)))


def test_each_threads_decay_var_list_is_its_own():
  """Two threads inside apply_gradients at once, each with its own decay_var_list: each sees its
  own (the list lives per thread, as the step's hyperparameters do)."""
  import threading
  a, b = tf.Variable(1.0), tf.Variable(2.0)
  opt = tf_adam_op.AdamWOptimizer(0.1, decay_var_list=[a, b])
  inside, seen = threading.Barrier(2), {}

  def thread(name, own, other):
    with opt._decaying([own]):
      inside.wait(timeout=30)  # both threads are in their call now
      seen[name] = (opt._decays(own), opt._decays(other))
      inside.wait(timeout=30)
    seen[name + " after"] = opt._decays(other)  # the constructor's list again

  threads = [threading.Thread(target=thread, args=("a", a, b)),
             threading.Thread(target=thread, args=("b", b, a))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert seen == {"a": (True, False), "b": (True, False), "a after": True, "b after": True}
