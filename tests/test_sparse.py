"""The fused sparse ops: stock parity (both index dtypes, both variable kinds, duplicates), lazy mode
against a NumPy LazyAdam, the sparse rows of docs/errors.md with nothing changed, and locking."""

import threading

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal, optimizer_state
from numpy_reference import lazy_adam_step
import tf_adam_op
from tf_adam_op import ops

SCALARS = dict(beta1_power=0.9, beta2_power=0.999, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
STEPS = 16
errors = tf.errors


def _embedding_problem(rng, dtype, rows=30, width=4):
  table = rng.standard_normal((rows, width)).astype(dtype)
  batches = [rng.integers(0, rows, size=12) for _ in range(STEPS)]  # duplicates in every batch
  return table, batches


def _train(cls, table, batches, index_dtype, mode, **kwargs):
  opt = cls(learning_rate=0.03, **kwargs)
  if mode.startswith("session"):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
      var = tf.compat.v1.Variable(table, use_resource=mode.endswith("resource"))
      ids = tf.compat.v1.placeholder(index_dtype, [None])
      train_op = opt.minimize(tf.reduce_sum(tf.square(tf.nn.embedding_lookup(var, ids))))
      session.run(tf.compat.v1.global_variables_initializer())
      for batch in batches:
        session.run(train_op, {ids: batch})
      return session.run(optimizer_state(opt, var))
  var = tf.Variable(table)

  def step(ids):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(tf.nn.embedding_lookup(var, ids)))
    opt.apply_gradients([(tape.gradient(loss, var), var)])

  step_fn = tf.function(step) if mode == "tf.function" else step
  for batch in batches:
    step_fn(tf.constant(batch, index_dtype))
  return [x.numpy() for x in optimizer_state(opt, var)]


MODES = ["eager", "tf.function", "session-ref", "session-resource"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index_dtype", [tf.int32, tf.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_stock_parity(rng, dtype, index_dtype, mode):
  table, batches = _embedding_problem(rng, dtype)
  results = {name: _train(cls, table, batches, index_dtype, mode) for name, cls in OPTIMIZERS.items()}
  assert_bitwise_equal(results["ours"], results["stock"])


def test_stock_parity_in_tf_function_without_grappler_arithmetic_rewrites(rng):
  """With grappler's arithmetic optimizer off, stock runs (g * g) * (1 - beta2) as written, and so do
  we (scale_first=False): still bit-identical."""
  table, batches = _embedding_problem(rng, np.float32)
  tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
  try:
    assert not ops.stock_sparse_scales_first()
    results = {name: _train(cls, table, batches, tf.int32, "tf.function")
               for name, cls in OPTIMIZERS.items()}
  finally:
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": True})
  assert_bitwise_equal(results["ours"], results["stock"])


@pytest.mark.parametrize("mode", ["eager", "tf.function", "session-ref"])
def test_lazy_mode_matches_numpy_lazy_adam(rng, mode):
  table, batches = _embedding_problem(rng, np.float32)
  ours = _train(tf_adam_op.AdamOptimizer, table, batches[:1], tf.int64, mode, lazy=True)
  rows = np.unique(batches[0])
  ids = batches[0]
  grad = 2 * table[ids]  # d/dx sum(x^2) of each gathered row
  expected = lazy_adam_step(table, np.zeros_like(table), np.zeros_like(table), grad, ids,
                            0.9, 0.999, 0.03, 0.9, 0.999, 1e-8)
  assert_bitwise_equal(ours[:3], expected)
  untouched = np.setdiff1d(np.arange(len(table)), rows)
  np.testing.assert_array_equal(ours[0][untouched], table[untouched])
  assert np.all(ours[1][untouched] == 0)


def test_lazy_is_keyword_only():
  with pytest.raises(TypeError):
    tf_adam_op.AdamOptimizer(0.001, 0.9, 0.999, 1e-8, False, "Adam", False, True)


def _vars(*arrays):
  return [tf.Variable(np.asarray(a, np.float32)) for a in arrays]


def _apply(var, m, v, grad, indices, **kwargs):
  return ops.resource_sparse_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(),
                                           grad, indices, **kwargs)


def assert_rejected(call, variables, error, match):
  before = [x.numpy().copy() for x in variables]
  with pytest.raises(error, match=match):
    call()
  assert_bitwise_equal([x.numpy() for x in variables], before,
                       names=[f"variable{i}" for i in range(len(variables))])


@pytest.fixture
def table_vars(rng):
  return _vars(rng.standard_normal((5, 3)), 0.1 * rng.standard_normal((5, 3)),
               np.abs(rng.standard_normal((5, 3))))


def test_13_indices_of_rank_2(table_vars):
  assert_rejected(lambda: _apply(*table_vars, tf.ones((2, 3)), tf.constant([[0], [1]])),
                  table_vars, errors.InvalidArgumentError, "indices must be a vector")


def test_14_grad_rows_differ_from_indices(table_vars):
  assert_rejected(lambda: _apply(*table_vars, tf.ones((3, 3)), tf.constant([0, 1])), table_vars,
                  errors.InvalidArgumentError, "one row per index")


@pytest.mark.parametrize("grad_shape", [(2, 4), (2, 3, 1), (6,)])
def test_15_grad_row_shape_or_rank_differs(table_vars, grad_shape):
  assert_rejected(lambda: _apply(*table_vars, tf.ones(grad_shape), tf.constant([0, 1])),
                  table_vars, errors.InvalidArgumentError, "same r")


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("bad", [5, -1], ids=["== rows", "negative"])
def test_16_21_bad_index_anywhere_changes_nothing(table_vars, bad, lazy):
  indices = tf.constant([0, 1, 2, bad])  # the bad index comes last: nothing before it is written
  assert_rejected(lambda: _apply(*table_vars, tf.ones((4, 3)), indices, lazy=lazy), table_vars,
                  errors.InvalidArgumentError, rf"indices\[3\] = {bad} is not in \[0, 5\)")


def test_16_bad_index_in_a_ref_variable_session():
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v = (tf.compat.v1.Variable(np.ones((5, 3), np.float32), use_resource=False)
                 for _ in "xyz")
    update = ops.sparse_apply_adam_v1(var, m, v, *SCALARS.values(), np.ones((2, 3), np.float32),
                                      [1, 7])
    session.run(tf.compat.v1.global_variables_initializer())
    with pytest.raises(errors.InvalidArgumentError, match=r"indices\[1\] = 7 is not in \[0, 5\)"):
      session.run(update)
    assert_bitwise_equal(session.run([var, m, v]), [np.ones((5, 3), np.float32)] * 3)


def test_17_int64_index_past_2_pow_31_is_not_truncated(table_vars):
  # 2^32 + 1 would wrap to 1 in 32 bits; it must be rejected, not applied to row 1.
  assert_rejected(lambda: _apply(*table_vars, tf.ones((1, 3)), tf.constant([2**32 + 1], tf.int64)),
                  table_vars, errors.InvalidArgumentError, "4294967297 is not in")


@pytest.mark.parametrize("lazy", [False, True])
def test_18_duplicates_equal_the_presummed_gradient(rng, lazy):
  grad = rng.standard_normal((4, 3)).astype(np.float32)
  init = rng.standard_normal((5, 3))
  with_duplicates, presummed = _vars(init, init * 0, init * 0), _vars(init, init * 0, init * 0)
  _apply(*with_duplicates, grad, tf.constant([2, 4, 2, 2]), lazy=lazy)
  summed = np.stack([(np.float32(0) + grad[0] + grad[2]) + grad[3], np.float32(0) + grad[1]])
  _apply(*presummed, summed, tf.constant([2, 4]), lazy=lazy)
  assert_bitwise_equal([x.numpy() for x in with_duplicates], [x.numpy() for x in presummed])


def test_19_empty_indices_still_decay_every_row(table_vars):
  before = [x.numpy().copy() for x in table_vars]
  _apply(*table_vars, tf.zeros((0, 3)), tf.constant([], tf.int32))
  np.testing.assert_array_equal(table_vars[1].numpy(), (before[1] * np.float32(0.9)))
  assert not np.array_equal(table_vars[0].numpy(), before[0])
  lazy_vars = _vars(*before)
  _apply(*lazy_vars, tf.zeros((0, 3)), tf.constant([], tf.int32), lazy=True)
  assert_bitwise_equal([x.numpy() for x in lazy_vars], before)


def test_20_scalar_variable(rng):
  scalars = _vars(1.0, 0.0, 0.0)
  assert_rejected(lambda: _apply(*scalars, tf.ones((1,)), tf.constant([0])), scalars,
                  errors.InvalidArgumentError, "at least 1 dimensional")


def test_26_snapshot_unchanged_by_a_sparse_update(table_vars):
  snapshot = table_vars[0].read_value()
  before = snapshot.numpy().copy()
  _apply(*table_vars, tf.ones((1, 3)), tf.constant([2]))
  np.testing.assert_array_equal(snapshot.numpy(), before)
  assert not np.array_equal(table_vars[0].numpy(), before)


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
def test_concurrent_locked_sparse_updates_equal_a_serial_order(rng, use_resource):
  rows, width, threads, runs = 20_000, 16, 16, 3
  table = rng.standard_normal((rows, width)).astype(np.float32)
  indices = rng.integers(0, rows, size=512)
  grad = rng.standard_normal((512, width)).astype(np.float32)
  initial = [table, np.zeros_like(table), np.zeros_like(table)]
  expected = initial
  for _ in range(threads * runs):  # every thread applies the same update: any order, same bits
    expected = lazy_adam_step(*expected, grad, indices, *SCALARS.values())
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v = (tf.compat.v1.Variable(x, use_resource=use_resource) for x in initial)
    args = (*SCALARS.values(), grad, indices)
    if use_resource:
      update = ops.resource_sparse_apply_adam_v1(var.handle, m.handle, v.handle, *args,
                                                 use_locking=True, lazy=True)
    else:
      update = ops.sparse_apply_adam_v1(var, m, v, *args, use_locking=True, lazy=True)
    session.run(tf.compat.v1.global_variables_initializer())
    workers = [threading.Thread(target=lambda: [session.run(update) for _ in range(runs)])
               for _ in range(threads)]
    for w in workers:
      w.start()
    for w in workers:
      w.join()
    assert_bitwise_equal(session.run([var, m, v]), expected)


def _numpy_stock_sparse_step(var, m, v, grad, indices, v_term, scalars):
  """Stock's all-rows sparse rule (float32), with v's term handed in (both summed over duplicates
  in input order from zero, as stock's unsorted_segment_sum sums)."""
  f = np.float32
  b1p, b2p, lr, beta1, beta2, eps = (f(x) for x in scalars.values())
  alpha = lr * np.sqrt(f(1) - b2p) / (f(1) - b1p)
  m, v = m * beta1, v * beta2
  for row in np.unique(indices):
    named = np.flatnonzero(indices == row)
    g, term = np.zeros_like(var[row]), np.zeros_like(var[row])
    for i in named:
      g, term = g + grad[i], term + v_term[i]
    m[row] = m[row] + g * (f(1) - beta1)
    v[row] = v[row] + term
  return var - (alpha * m) / (np.sqrt(v) + eps), m, v


def test_a_handed_in_v_term_is_used_instead_of_the_gradients(rng):
  """v_term (what the optimizer builds from stock's own ops in graphs) replaces (g * g) * (1 - beta2);
  duplicates sum it as they sum the gradient."""
  var0 = rng.standard_normal((10, 3)).astype(np.float32)
  m0, v0 = np.full_like(var0, 0.1), np.full_like(var0, 0.2)
  indices = np.array([4, 1, 4, 9, 4], np.int64)
  grad = rng.standard_normal((5, 3)).astype(np.float32)
  v_term = np.abs(rng.standard_normal((5, 3))).astype(np.float32)
  var, m, v = (tf.Variable(x) for x in (var0, m0, v0))
  ops.resource_sparse_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(),
                                    tf.constant(grad), tf.constant(indices),
                                    v_term=tf.constant(v_term))
  expected = _numpy_stock_sparse_step(var0, m0, v0, grad, indices, v_term, SCALARS)
  assert_bitwise_equal([var.numpy(), m.numpy(), v.numpy()], expected, names=("var", "m", "v"))


def test_a_v_term_of_another_shape_than_grad_changes_nothing(table_vars):
  var, m, v = table_vars
  before = [x.numpy().copy() for x in table_vars]
  with pytest.raises((errors.InvalidArgumentError, ValueError), match="v_term|Shapes"):
    ops.resource_sparse_apply_adam_v1(var.handle, m.handle, v.handle, *SCALARS.values(),
                                      tf.ones([2, var.shape[1]]), tf.constant([0, 1]),
                                      v_term=tf.ones([3, var.shape[1]]))
  for x, b in zip(table_vars, before):
    np.testing.assert_array_equal(x.numpy(), b)
