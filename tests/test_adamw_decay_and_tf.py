"""AdamWOptimizer's weight decay as a tensor, a callable, a schedule, per call (decay_var_list), and
AMSGrad and AdamW with the rest of TensorFlow (program order, checkpoints, SavedModel, threads),
against stock-built references. The update rule against stock: test_amsgrad_adamw_optimizers.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_bitwise_equal
from numpy_reference import variant_step
from tf_adam_op.bench.stock_variants import ContribAdamW, StockAmsgrad
import tf_adam_op
from variant_cases import FLOAT_DTYPES, HYPER, PAIRS, STEPS, _eager, _inits_and_grads, _names, _slots, _state


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
