"""Under XLA a step of several IndexedSlices gradients checks every one of their indices before any
sparse update runs (CheckIndicesInRange, _step/checks.xla_index_check): a bad index in any of them
writes nothing, and the error names the variable and the index (docs/errors.md). The op itself,
eagerly and under XLA; v1 and Keras steps with float and 8-bit states, behavioural (repeated) and
structural (what the compiled step's sparse updates depend on). The Keras optimizers here take
lazy rows (lazy=True), which every index must be in: under Keras's own rule (lazy=False) Keras's
XLA step drops an index out of range, and so does ours (tf_adam_op/keras/_kept_rows.py,
tests/test_keras_edges.py)."""

import re

import numpy as np
import pytest
import tensorflow as tf

from xla_cases import ancestors, calls_not_after, entry_calls, graph_ancestors
from xla_cases import outputs_not_after
import tf_adam_op
from tf_adam_op import ops
from tf_adam_op._step import xla as _xla

pytestmark = pytest.mark.skipif(not _xla.kernels_enabled(),
                                reason=f"no XLA kernels here: {_xla.describe()}")

CHECK_TARGET = "tf_adam_op_check_indices"
SPARSE_TARGETS = ("tf_adam_op_sparse_adam", "tf_adam_op_sparse_adam_8bit")
ROWS = 512  # a (512, 8) table: 4,096 elements, 8-bit states with state_bits=8


def _keras():
  keras = pytest.importorskip("keras")
  if not keras.__version__.startswith("3."):
    pytest.skip(f"tf_adam_op.keras needs Keras 3, found {keras.__version__}")
  import tf_adam_op.keras as tk
  return keras, tk


# --- the op -----------------------------------------------------------------------------------

def _run(mode, fn):
  return fn() if mode == "eager" else tf.function(fn, jit_compile=True)()


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_the_op_gives_one_when_every_index_is_a_row(mode):
  one = _run(mode, lambda: ops.check_indices_in_range(
      [tf.constant([0, 3, 3], tf.int32), tf.zeros([0], tf.int64), tf.constant([9], tf.int64)],
      tf.constant([4, 0, 10], tf.int64), ["a", "b", "c"]))
  assert one.dtype == tf.float32 and float(one) == 1.0


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("first, second, message", [
    ([0, 4], [1], r"(^|\s)a: indices\[1\] = 4 is not in \[0, 4\)"),
    ([0, 3], [2, -1], r"(^|\s)b: indices\[1\] = -1 is not in \[0, 3\)"),
    ([5], [-7], r"(^|\s)a: indices\[0\] = 5 is not in \[0, 4\)"),  # the first vector's, first
], ids=["first", "second", "both"])
def test_the_op_names_the_vector_and_its_first_bad_index(mode, first, second, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _run(mode, lambda: ops.check_indices_in_range(
        [tf.constant(first, tf.int64), tf.constant(second, tf.int32)],
        tf.constant([4, 3], tf.int64), ["a", "b"]))


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_the_op_refuses_names_or_row_counts_that_do_not_match_the_vectors(mode):
  """Eagerly InvalidArgumentError from the kernel; in a graph ValueError from the shape function."""
  error = tf.errors.InvalidArgumentError if mode == "eager" else ValueError
  run = (lambda fn: fn()) if mode == "eager" else (lambda fn: tf.function(fn)())
  indices = lambda: [tf.constant([0]), tf.constant([1])]
  with pytest.raises(error, match="names must name each of the 2 index vectors, got 1"):
    run(lambda: ops.check_indices_in_range(indices(), tf.constant([4, 4], tf.int64), ["a"]))
  with pytest.raises(error, match="rows must hold 2 row counts, got 1|Dimension must be 2 but is 1"):
    run(lambda: ops.check_indices_in_range(indices(), tf.constant([4], tf.int64), ["a", "b"]))
  with pytest.raises(error, match="vectors, got shape|must be rank 1"):
    run(lambda: ops.check_indices_in_range([tf.constant([[0]]), tf.constant([1])],
                                           tf.constant([4, 4], tf.int64), ["a", "b"]))


# --- the optimizers ---------------------------------------------------------------------------

def _family(family, state_bits=32, decay=False):
  """(make a variable, the optimizer) of v1 or Keras: Adam, or with `decay` AdamW. "keras, Keras's
  own dense updates": a NumPy float64 beta_2, with which Keras's own update_step updates the
  float32 variables with dense gradients (Keras computes in float64), the lazy tables ours."""
  if family.startswith("keras"):
    keras, tk = _keras()
    options = {"beta_2": np.float64(0.999)} if family.endswith("own dense updates") else {}
    opt = (tk.AdamW(0.01, weight_decay=0.1, state_bits=state_bits, lazy=True, **options) if decay
           else tk.Adam(0.01, state_bits=state_bits, lazy=True, **options))
    return keras.Variable, opt
  opt = (tf_adam_op.AdamWOptimizer(0.1, learning_rate=0.01, state_bits=state_bits) if decay
         else tf_adam_op.AdamOptimizer(0.01, state_bits=state_bits))
  return tf.Variable, opt


def _step_of_two_tables(family, state_bits):
  """(step(first, second), state(), opt): an XLA step of a dense variable and two tables whose
  IndexedSlices gradients name the rows `first` and `second`."""
  rng = np.random.default_rng(11)
  make, opt = _family(family, state_bits)
  dense = make(rng.normal(size=(6, 4)).astype(np.float32), name="dense")
  tables = [make(rng.normal(size=(ROWS, 8)).astype(np.float32), name=name)
            for name in ("table_a", "table_b")]

  @tf.function(jit_compile=True)
  def step(first, second):
    rows = lambda indices: tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([ROWS, 8]))
    opt.apply_gradients([(rows(first), tables[0]), (tf.ones([6, 4]), dense),
                         (rows(second), tables[1])])

  def state():
    optimizer_variables = opt.variables() if family == "v1" else opt.variables
    return [np.asarray(v) for v in [dense, *tables, *optimizer_variables]]
  return step, state, opt


FAMILIES = ["v1", "keras"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("state_bits", [32, 8])
@pytest.mark.parametrize("bad", ["first", "second"])
def test_a_bad_index_in_any_sparse_gradient_writes_nothing(family, state_bits, bad):
  """Repeated: without the step-wide check XLA ran the other table's sparse update first (before
  this check existed, a bad index in the second gradient left the first table written, every
  time)."""
  step, state, _ = _step_of_two_tables(family, state_bits)
  good = tf.constant([1, 2])
  step(good, good)  # creates the states; a good step
  before = state()
  out_of_range = tf.constant([3, ROWS])
  table = "table_a" if bad == "first" else "table_b"
  for _ in range(5):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"variable '[^']*{table}[^']*' is out of range; nothing was updated: "
                             rf"indices\[1\] = {ROWS} is not in \[0, {ROWS}\)"):
      step(*((out_of_range, good) if bad == "first" else (good, out_of_range)))
    for i, (b, a) in enumerate(zip(before, state())):
      np.testing.assert_array_equal(a, b, err_msg=f"state[{i}]")
  step(good, good)  # and the step still runs
  assert not all(np.array_equal(a, b) for a, b in zip(before, state()))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("state_bits", [32, 8])
def test_every_sparse_update_of_the_compiled_step_waits_for_the_index_check(family, state_bits):
  """Structural, needing no luck with XLA's schedule: one check, and every sparse update's custom
  call, and every value the step writes, has it among its inputs' inputs."""
  step, _, _ = _step_of_two_tables(family, state_bits)
  good = tf.constant([1, 2])
  step(good, good)
  hlo = step.experimental_get_compiler_ir(good, good)(stage="hlo")
  _, targets = entry_calls(hlo)
  sparse_calls = [name for name, target in targets.items() if target in SPARSE_TARGETS]
  assert len(sparse_calls) == 2, targets
  for target in SPARSE_TARGETS:
    not_after, checks = calls_not_after(hlo, target, CHECK_TARGET)
    assert checks == 1 and not_after == []
  # and so does every value it writes (the dense variable's, the beta powers or `iterations`)
  not_after, written = outputs_not_after(hlo, CHECK_TARGET)
  assert written >= 7 and not_after == []


@pytest.mark.parametrize("family", FAMILIES)
def test_a_step_of_one_sparse_gradient_is_checked_first_too(family):
  """One sparse gradient: the same check, so the error names the variable, and the rest of the
  step waits for it (test_keras_ema_... below for why its own op's check is not enough)."""
  rng = np.random.default_rng(12)
  make, opt = _family(family)
  table = make(rng.normal(size=(ROWS, 8)).astype(np.float32), name="table_a")
  dense = make(rng.normal(size=(6, 4)).astype(np.float32))

  @tf.function(jit_compile=True)
  def step(indices):
    rows = tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([ROWS, 8]))
    opt.apply_gradients([(rows, table), (tf.ones([6, 4]), dense)])
  step(tf.constant([1, 2]))
  hlo = step.experimental_get_compiler_ir(tf.constant([1, 2]))(stage="hlo")
  not_after, checks = calls_not_after(hlo, "tf_adam_op_sparse_adam", CHECK_TARGET)
  assert checks == 1 and not_after == []
  before = [np.asarray(table), np.asarray(dense)]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf"table_a.* out of range; nothing was updated: indices\[1\] = {ROWS}"):
    step(tf.constant([1, ROWS]))
  for b, a in zip(before, [np.asarray(table), np.asarray(dense)]):
    np.testing.assert_array_equal(a, b)


def _scheduled_entry(hlo):
  """The optimized HLO's entry computation, in the order XLA's schedule runs it: (name, opcode)."""
  entry = hlo[hlo.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  return re.findall(r"^\s*(?:ROOT )?%(\S+) = \S+(?: \S+)*? ([a-z\-]+)\(", entry, re.M)


def test_keras_ema_step_with_a_bad_index_leaves_iterations_and_the_averages():
  """Keras's use_ema=True under XLA: before the step-wide check, a step whose one sparse op failed
  left `iterations` holding other bits, every time (XLA had put a temporary of the step's
  arithmetic in its donated buffer before the sparse op ran). The check reads only the indices,
  and XLA schedules it before any arithmetic (structural, on the scheduled program), so nothing is
  written (behavioural, repeated)."""
  keras, tk = _keras()
  opt = tk.Adam(0.01, use_ema=True, lazy=True)
  table = keras.Variable(np.ones((64, 8), np.float32), name="table_a")
  dense = keras.Variable(np.ones((6, 4), np.float32))

  @tf.function(jit_compile=True)
  def step(indices):
    rows = tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([64, 8]))
    opt.apply_gradients([(rows, table), (tf.ones([6, 4]), dense)])
  step(tf.constant([1, 2]))
  schedule = _scheduled_entry(step.experimental_get_compiler_ir(tf.constant([1, 2]))(
      stage="optimized_hlo"))
  opcodes = [opcode for _, opcode in schedule]
  first_check = next(i for i, (name, opcode) in enumerate(schedule)
                     if opcode == "custom-call" and name.startswith("CheckIndicesInRange"))
  arithmetic = {"fusion", "custom-call", "conditional", "add", "multiply"}
  assert not arithmetic & set(opcodes[:first_check]), schedule[:first_check]
  state = lambda: [np.asarray(v).tobytes() for v in [table, dense, *opt.variables]]
  before = state()
  for _ in range(10):
    with pytest.raises(tf.errors.InvalidArgumentError, match="table_a"):
      step(tf.constant([1, 99]))
    assert state() == before
  assert int(opt.iterations) == 1


def test_keras_ema_step_of_a_variable_given_twice_leaves_iterations():
  """Found by the differential search: with a learning rate schedule, a float16 variable given
  twice (two rounds) and use_ema=True, a refused step left `iterations` holding a float32 beta
  power's bits, every time. The step passed iterations' value through its ordering conditional
  (_step/xla.after_values), so XLA copied that donated buffer first and put a temporary in it
  before the check ran; iterations now takes a zero through it (structural: the optimized program
  copies no parameter)."""
  keras, tk = _keras()
  opt = tk.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 2, 0.5), use_ema=True,
                lazy=True)
  w = keras.Variable(np.linspace(-1, 1, 5), dtype="float16", name="w")

  @tf.function(jit_compile=True)
  def step(index):
    first = tf.IndexedSlices(tf.ones([1], tf.float16), index, tf.constant([5]))
    second = tf.IndexedSlices(tf.ones([2], tf.float16), tf.constant([1, 2]), tf.constant([5]))
    opt.apply_gradients([(first, w), (second, w)])
  step(tf.constant([1]))
  schedule = _scheduled_entry(step.experimental_get_compiler_ir(tf.constant([1]))(
      stage="optimized_hlo"))
  assert "copy" not in [opcode for _, opcode in schedule], schedule
  state = lambda: [np.asarray(v).tobytes() for v in [w, *opt.variables]]
  before = state()
  for _ in range(5):
    with pytest.raises(tf.errors.InvalidArgumentError, match="'w"):
      step(tf.constant([5]))
    assert state() == before


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("decay", [False, True], ids=["Adam", "AdamW"])
def test_a_bad_index_in_a_later_round_writes_nothing_of_an_earlier_one(family, decay):
  """A variable given twice is updated once per gradient, in rounds (as stock and Keras do): the
  bad index is in the second round's sparse gradient, and the first round's dense and sparse
  updates (of this variable and another table) wait for the check too. Keras's AdamW decays a
  variable given twice in its own pass, twice, before the updates: that pass waits too (found by
  an outside check: it ran, every time)."""
  rng = np.random.default_rng(13)
  make, opt = _family(family, decay=decay)
  table_a, table_b = (make(rng.normal(size=(ROWS, 8)).astype(np.float32), name=name)
                      for name in ("table_a", "table_b"))
  rows = lambda indices: tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([ROWS, 8]))

  @tf.function(jit_compile=True)
  def twice(second_round):
    opt.apply_gradients([(tf.ones([ROWS, 8]), table_a), (rows(tf.constant([1, 2])), table_b),
                         (rows(second_round), table_a)])
  twice(tf.constant([3, 4]))
  variables = lambda: [np.asarray(v) for v in [table_a, table_b] + list(
      opt.variables() if family == "v1" else opt.variables)]
  before = variables()
  for _ in range(5):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"table_a.*is out of range"):
      twice(tf.constant([3, ROWS]))
    for i, (b, a) in enumerate(zip(before, variables())):
      np.testing.assert_array_equal(a, b, err_msg=f"state[{i}]")


def test_keras_own_update_in_an_earlier_round_waits_for_a_later_rounds_index_check():
  """With a NumPy float64 beta Keras's own update_step updates float32 variables with float
  states (docs/keras.md); it writes m and v from the gradient alone, so its gradient waits for the
  step's checks by data. Here the bad index is in the second round (an 8-bit table given twice);
  `x` is Keras's, in the first round, which has no sparse update to wait for (found in review:
  x's m and v were written before the step failed, every time)."""
  keras, tk = _keras()
  rng = np.random.default_rng(16)
  x = keras.Variable(rng.normal(size=(10,)).astype(np.float32), name="x")
  table = keras.Variable(rng.normal(size=(ROWS, 8)).astype(np.float32), name="table")
  opt = tk.Adam(0.01, beta_1=np.float64(0.9), state_bits=8, lazy=True)

  @tf.function(jit_compile=True)
  def step(second_round):
    rows = tf.IndexedSlices(tf.ones([2, 8]), second_round, tf.constant([ROWS, 8]))
    opt.apply_gradients([(tf.ones([10]), x), (tf.ones([ROWS, 8]), table), (rows, table)])
  step(tf.constant([3, 4]))
  assert opt._keras_computes(x.value) and not opt._keras_computes(table.value)
  # Structural: every value the compiled step writes (x, its m and v included) has the check
  # among its inputs' inputs.
  not_after, written = outputs_not_after(
      step.experimental_get_compiler_ir(tf.constant([3, 4]))(stage="hlo"), CHECK_TARGET)
  assert written >= 9 and not_after == []  # x, m, v; the table and its states; iterations
  state = lambda: [np.asarray(v).tobytes() for v in [x, table, *opt.variables]]
  before = state()
  for _ in range(5):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"'table.*is out of range"):
      step(tf.constant([3, ROWS]))
    assert state() == before


@pytest.mark.parametrize("path", ["general (a bad index)", "fast (a corrupt 8-bit state)"])
def test_a_v1_xla_step_that_fails_leaves_global_step(path):
  """stock's base class (v1's general path) and the fast path advance global_step after the
  updates by a control dependency, which XLA drops: the advance waits for them by data (found by
  an outside check: global_step advanced on every failed step)."""
  rng = np.random.default_rng(15)
  global_step = tf.Variable(0, dtype=tf.int64)
  general = path.startswith("general")
  shape = (10, 4) if general else (ROWS, 8)  # float states; 8-bit states
  tables = [tf.Variable(rng.normal(size=shape).astype(np.float32)) for _ in range(2)]
  opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)

  @tf.function(jit_compile=True)
  def step(indices):
    grads = ([tf.IndexedSlices(tf.ones([2, 4]), i, tf.constant(shape)) for i in (indices[:2],
                                                                             indices[2:])]
             if general else [tf.ones(shape)] * 2)
    opt.apply_gradients(zip(grads, tables), global_step=global_step)
  step(tf.constant([1, 2, 3, 4]))
  assert int(global_step) == 1
  # Structural: the int64 add (global_step + 1) has every update's custom call among its inputs'
  # inputs (XLA's schedule happened to order the fast path's without it).
  hlo = step.experimental_get_compiler_ir(tf.constant([1, 2, 3, 4]))(stage="hlo")
  operands, targets = entry_calls(hlo)
  updates = {name for name, target in targets.items() if not target.startswith("tf_adam_op_check")}
  advances = re.findall(r"^\s*%(\S+) = s64\[\] add\(", hlo, re.M)
  assert updates and len(advances) == 1, (targets, advances)
  assert updates <= ancestors(operands, advances[0])
  if not general:
    scales = opt.get_slot(tables[1], "v_absmax")
    scales.assign(tf.tensor_scatter_nd_update(scales, [[0]], [-1.0]))
  for _ in range(3):
    with pytest.raises(tf.errors.InvalidArgumentError):
      step(tf.constant([1, 2, 3, 10]))
    assert int(global_step) == 1


@pytest.mark.parametrize("family", FAMILIES + ["keras, Keras's own dense updates"])
@pytest.mark.parametrize("state_bits", [32, 8])
@pytest.mark.parametrize("bad", ["first", "second"])
def test_a_bad_index_under_a_strategy_writes_nothing(family, state_bits, bad):
  """Under a tf.distribute strategy (one replica: TensorFlow compiles no step over several
  devices) the updates are built in the strategy's cross-replica context, another thread than the
  replica's: the checks are made there too, and v1's global_step and Keras's `iterations` wait for
  the updates by data (found in review: the other table, the dense variable and `iterations` or
  global_step were written, every time). With Keras's own update of the dense variable (a float64
  beta_2), its gradient waits for the check too (found by an outside check, 2026-12-08: the lazy
  tables were taken for Keras's updates there, left out of the check, and the dense variable's m
  and v were written)."""
  rng = np.random.default_rng(17)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    make, opt = _family(family, state_bits)
    dense = make(rng.normal(size=(6, 4)).astype(np.float32), name="dense")
    tables = [make(rng.normal(size=(ROWS, 8)).astype(np.float32), name=name)
              for name in ("table_a", "table_b")]
    global_step = tf.Variable(0, dtype=tf.int64)
  keyword = {"global_step": global_step} if family == "v1" else {}

  @tf.function(jit_compile=True)
  def step(first, second):
    rows = lambda indices: tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([ROWS, 8]))

    def replica_step():
      opt.apply_gradients(
          [(rows(first), tables[0]), (tf.ones([6, 4]), dense), (rows(second), tables[1])],
          **keyword)
    strategy.run(replica_step)
  good = tf.constant([1, 2])
  step(good, good)
  not_after, written = outputs_not_after(
      step.experimental_get_compiler_ir(good, good)(stage="hlo"), CHECK_TARGET)
  assert written >= 9 and not_after == []
  state = lambda: [np.asarray(v).tobytes() for v in [dense, *tables, global_step] + list(
      opt.variables() if family == "v1" else opt.variables)]
  before = state()
  table = "table_a" if bad == "first" else "table_b"
  for _ in range(5):
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"'{table}[^']*' is out of range"):
      step(*((tf.constant([3, ROWS]), good) if bad == "first" else (good, tf.constant([3, ROWS]))))
    assert state() == before
  step(good, good)
  assert int(global_step.numpy()) == (2 if family == "v1" else 0)
  assert family == "v1" or int(np.asarray(opt.iterations)) == 2


@pytest.mark.parametrize("sparse_complex", [False, True], ids=["dense", "sparse"])
def test_stock_updates_of_complex_variables_under_a_strategy_wait_for_the_check(sparse_complex):
  """Complex variables take stock's own update (docs/errors.md), which takes no learning rate of
  ours: under XLA its gradient waits for the step's checks by data (under a strategy nothing else
  orders it; found by the differential search: the complex variable was written)."""
  rng = np.random.default_rng(19)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    table = tf.Variable(rng.normal(size=(ROWS, 8)).astype(np.float32), name="table")
    values = (rng.normal(size=(6, 2)) + 1j * rng.normal(size=(6, 2))).astype(np.complex64)
    complex_var = tf.Variable(values, name="complex_var")
    opt = tf_adam_op.AdamOptimizer(0.01)

  @tf.function(jit_compile=True)
  def step(indices):
    def replica_step():
      rows = tf.IndexedSlices(tf.ones([2, 8]), indices, tf.constant([ROWS, 8]))
      complex_grad = (tf.IndexedSlices(tf.ones([2, 2], tf.complex64), tf.constant([0, 3]),
                                       tf.constant([6, 2])) if sparse_complex
                      else tf.ones([6, 2], tf.complex64))
      opt.apply_gradients([(complex_grad, complex_var), (rows, table)])
    strategy.run(replica_step)
  step(tf.constant([1, 2]))
  not_after, written = outputs_not_after(
      step.experimental_get_compiler_ir(tf.constant([1, 2]))(stage="hlo"), CHECK_TARGET)
  assert written >= 8 and not_after == []
  state = lambda: [np.asarray(v.numpy()).tobytes() for v in [table, complex_var, *opt.variables()]]
  before = state()
  for _ in range(3):
    with pytest.raises(tf.errors.InvalidArgumentError, match="'table.*out of range"):
      step(tf.constant([1, ROWS]))
    assert state() == before


def test_keras_adamw_under_a_strategy_decays_nothing_on_a_refused_step():
  """AdamW decays a variable given twice in Keras's own pass, which under a strategy Keras builds
  in a merge call (another thread than the replica's): under XLA that pass reads its learning
  rate times the step's checks there too (found by an outside check: the table was decayed twice
  on every refused step; the sparse ops update it in place, so the decay was in its buffer)."""
  keras, tk = _keras()
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    table = keras.Variable(np.ones((ROWS, 4), np.float32), name="table")
    opt = tk.AdamW(0.01, weight_decay=0.1, lazy=True)

  @tf.function(jit_compile=True)
  def step(second):
    def replica_step():
      rows = lambda indices: tf.IndexedSlices(tf.ones([2, 4]), indices, tf.constant([ROWS, 4]))
      opt.apply_gradients([(rows(tf.constant([0, 1])), table), (rows(second), table)])
    strategy.run(replica_step)
  good = tf.constant([2, 3])
  step(good)
  graph = step.get_concrete_function(good).graph
  decays = [op for op in graph.get_operations() if op.type == "AssignSubVariableOp"]
  assert len(decays) == 2  # Keras's pass, once per time the table is given
  for op in decays:
    assert "CheckIndicesInRange" in {o.type for o in graph_ancestors(op)}, op.name
  state = lambda: [np.asarray(v.numpy()).tobytes() for v in [table, *opt.variables]]
  before = state()
  for _ in range(3):
    with pytest.raises(tf.errors.InvalidArgumentError, match="'table.*out of range"):
      step(tf.constant([2, ROWS]))
    assert state() == before
