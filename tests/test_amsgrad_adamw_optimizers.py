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
from tf_adam_op.bench.stock_variants import ContribAdamW
import tf_adam_op
from variant_cases import FLOAT_DTYPES, HYPER, PAIRS, STEPS, _eager, _inits_and_grads, _names, _slots, _state

# As the optimizers hold them (float32 tensors, cast to the compute dtype), for the NumPy rule.
FLOAT32_HYPER = [np.float32(x) for x in HYPER.values()]


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
