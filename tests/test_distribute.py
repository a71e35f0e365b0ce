"""tf.distribute.MirroredStrategy over two logical CPUs (set up in conftest.py): training inside
strategy.run matches stock AdamOptimizer under the same strategy bit for bit, with slots and beta
powers mirrored as stock's are."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal
from tf_adam_op.bench.stock_variants import ContribAdamW, StockAmsgrad
import tf_adam_op

STEPS = 6


@pytest.fixture(scope="module")
def strategy():
  # One strategy for the module: several MirroredStrategy objects in one process can hand out
  # clashing collective instance keys.
  assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest sets up two logical CPUs"
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _mirrored_run(strategy, cls, sparse, decay_only_w=False):
  with strategy.scope():
    w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="w")
    b = tf.Variable(np.zeros(3, np.float32), name="b")
    opt = cls(0.05, decay_var_list=[w]) if decay_only_w else cls(0.05)

  def replica_step(x):
    with tf.GradientTape() as tape:
      rows = tf.gather(w, [0, 3, 0]) if sparse else w
      loss = tf.reduce_sum(tf.square(tf.matmul(x, rows) + b))
    grads = tape.gradient(loss, [w, b])
    opt.apply_gradients(zip(grads, [w, b]))

  @tf.function
  def step(x):
    strategy.run(replica_step, args=(x,))

  rows = 3 if sparse else 4
  for i in range(STEPS):
    step(tf.constant(np.full((2, rows), 0.1 * (i + 1), np.float32)))
  slots = [opt.get_slot(v, s) for v in (w, b) for s in opt.get_slot_names()]
  powers = list(opt._get_beta_accumulators())
  kinds = [type(x).__name__ for x in slots + powers]
  return [x.numpy() for x in [w, b] + slots + powers], kinds


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_mirrored_strategy_matches_stock(strategy, sparse):
  ours, our_kinds = _mirrored_run(strategy, OPTIMIZERS["ours"], sparse)
  stock, stock_kinds = _mirrored_run(strategy, OPTIMIZERS["stock"], sparse)
  assert our_kinds == stock_kinds
  assert all("Mirrored" in kind for kind in our_kinds), our_kinds
  assert_bitwise_equal(ours, stock, names=["w", "b", "w/m", "w/v", "b/m", "b/v", "b1p", "b2p"])


# AMSGrad and AdamW against their stock-built references (stock_variants.py) under the strategy.
VARIANTS = {
    "amsgrad": (lambda lr: tf_adam_op.AdamOptimizer(lr, amsgrad=True), StockAmsgrad),
    "adamw": (lambda lr, **kw: tf_adam_op.AdamWOptimizer(0.02, lr, **kw),
              lambda lr, **kw: ContribAdamW(0.02, lr, **kw)),
}


@pytest.mark.parametrize("variant, decay_only_w", [("amsgrad", False), ("adamw", False),
                                                   ("adamw", True)],
                         ids=["amsgrad", "adamw", "adamw_decay_var_list"])
def test_mirrored_strategy_amsgrad_and_adamw_match_stock_built(strategy, variant, decay_only_w):
  """decay_var_list names the mirrored variables; the update sees their components."""
  ours_cls, stock_cls = VARIANTS[variant]
  ours, our_kinds = _mirrored_run(strategy, ours_cls, sparse=False, decay_only_w=decay_only_w)
  stock, stock_kinds = _mirrored_run(strategy, stock_cls, sparse=False, decay_only_w=decay_only_w)
  if decay_only_w:  # b really did not decay: with every variable decaying it ends elsewhere
    everything, _ = _mirrored_run(strategy, ours_cls, sparse=False)
    assert not np.array_equal(everything[1], ours[1])
  assert our_kinds == stock_kinds
  assert all("Mirrored" in kind for kind in our_kinds), our_kinds
  assert_bitwise_equal(ours, stock, names=[str(i) for i in range(len(ours))])


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_a_bad_index_in_either_replica_writes_nothing(strategy, mode):
  """The base class builds the updates in the strategy's cross-replica context: the step's index
  check is made there, each replica's indices against its own component, before any write (found
  in review: each sparse op checked only its own, after the dense variable's update had run)."""
  with strategy.scope():
    dense = tf.Variable(np.ones((4, 3), np.float32), name="dense")
    table = tf.Variable(np.ones((5, 3), np.float32), name="table")
    global_step = tf.Variable(0, dtype=tf.int64)
    opt = tf_adam_op.AdamOptimizer(0.05)

  def replica_step(bad_replica):
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    row = tf.where(tf.equal(replica, bad_replica), 5, 2)  # 5: out of range
    rows = tf.IndexedSlices(tf.ones([2, 3]), tf.stack([1, row]), tf.constant([5, 3]))
    opt.apply_gradients([(tf.ones([4, 3]), dense), (rows, table)], global_step=global_step)

  def step(bad_replica):
    strategy.run(replica_step, args=(bad_replica,))
  if mode == "function":
    step = tf.function(step)
  step(tf.constant(-1))  # a good step: the slots and beta powers exist
  state = lambda: [np.asarray(v.numpy()).tobytes() for v in [dense, table, global_step] + [
      opt.get_slot(v, s) for v in (dense, table) for s in ("m", "v")] + list(
          opt._get_beta_accumulators())]
  before = state()
  for bad_replica in (0, 1):
    with pytest.raises(tf.errors.InvalidArgumentError, match="table.*out of range"):
      step(tf.constant(bad_replica))
    assert state() == before


@pytest.mark.parametrize("state_bits", [32, 8])
def test_build_outside_the_scope_makes_mirrored_slots_and_the_step_runs(strategy, state_bits):
  """v1 `build` (for moving states in before a first step) called outside the strategy's scope on
  its variables makes the slots the step would, mirrored, and a step in strategy.run then runs and
  equals one whose optimizer was built inside the scope (an outside check found a placement
  error)."""
  results = []
  for build_in_scope in (True, False):
    with strategy.scope():
      w = tf.Variable(np.linspace(-1, 1, 8192, dtype=np.float32).reshape(64, 128), name="w")
      opt = tf_adam_op.AdamOptimizer(0.05, state_bits=state_bits)
      if build_in_scope:
        opt.build([w])
    if not build_in_scope:
      opt.build([w])
    slots = [opt.get_slot(w, name) for name in opt.get_slot_names()]
    assert slots and all("Mirrored" in type(s).__name__ for s in slots), slots

    @tf.function
    def step():
      strategy.run(lambda: opt.apply_gradients([(tf.fill(w.shape, 0.5), w)]))
    step()
    results.append([w.numpy()] + [s.numpy() for s in slots])
  assert_bitwise_equal(results[1], results[0], names=["w"] + opt.get_slot_names())
