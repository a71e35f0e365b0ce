"""Program order inside tf.function: the multi-tensor update is ordered with every other op on the
same variables, slots and beta powers, as stock's per-variable ops are (issue: a read after
apply_gradients saw the old value, an assign after it was overwritten, ...).

Two kinds of check:
- behaviour against stock, in the same process, repeated on tensors big enough for an unordered op to
  overlap the update (>= 10 calls of 2^17 elements): each case's results must equal stock's bit for
  bit on every call;
- structure, which needs no luck: in the traced graph there is a path (data or control) from every
  op on a variable to every later one, in program order, the multi-tensor op included.
"""

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS

SIZE = 1 << 17
CALLS = 10
MULTI_OPS = ("ResourceApplyAdamV1Multi", "ResourceApplyAdamV1MultiNoAdvance")


def _grad(i):
  return tf.fill([SIZE], 0.5 + 0.1 * tf.cast(i, tf.float32))


# Each case: make(opt_class) -> (a zero-argument tf.function that runs one step and returns what it
# observed, [variables]). Each builds a fresh variable w (and what else it needs).

def _apply_then_read(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  @tf.function
  def step(i):
    opt.apply_gradients([(_grad(i), w)])
    return w.read_value()
  return step, [w]


def _apply_then_assign(cls):  # a projection or clip after the step (e.g. WGAN)
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  @tf.function
  def step(i):
    opt.apply_gradients([(_grad(i), w)])
    w.assign(tf.clip_by_value(w, -0.5, 0.95))
    return w.read_value()
  return step, [w]


def _assign_then_apply(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  @tf.function
  def step(i):
    w.assign(tf.fill([SIZE], 2.0 + tf.cast(i, tf.float32)))
    opt.apply_gradients([(_grad(i), w)])
    return w.read_value()
  return step, [w]


def _read_before_apply(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  @tf.function
  def step(i):
    before = w.read_value()
    opt.apply_gradients([(_grad(i), w)])
    return before
  return step, [w]


def _ema_after_apply(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  ema = tf.train.ExponentialMovingAverage(0.5)
  ema.apply([w])  # creates the average eagerly
  @tf.function
  def step(i):
    opt.apply_gradients([(_grad(i), w)])
    ema.apply([w])
    return ema.average(w).read_value()
  return step, [w]


def _slots_and_powers_read_after_apply(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  opt.apply_gradients([(tf.zeros([SIZE]), w)])  # slots exist before tracing
  m, v = opt.get_slot(w, "m"), opt.get_slot(w, "v")
  b1, b2 = opt._get_beta_accumulators()
  @tf.function
  def step(i):
    opt.apply_gradients([(_grad(i), w)])
    return tf.concat([m.read_value()[:8], v.read_value()[:8], [b1.read_value(), b2.read_value()]],
                     0)
  return step, [w]


def _cond_branch_applies_then_read(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  @tf.function
  def step(i):
    def apply():
      opt.apply_gradients([(_grad(i), w)])
      return tf.constant(1)
    tf.cond(i >= 0, apply, lambda: tf.constant(0))
    return w.read_value()
  return step, [w]


def _while_loop_applies_then_read(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  opt.apply_gradients([(tf.zeros([SIZE]), w)])  # slots exist before tracing the loop body
  @tf.function
  def step(i):
    def body(k):
      opt.apply_gradients([(_grad(i + k), w)])
      return [k + 1]
    tf.while_loop(lambda k: k < 3, body, [tf.constant(0)])
    return w.read_value()
  return step, [w]


def _inner_function_applies_then_read(cls):
  w, opt = tf.Variable(tf.ones([SIZE])), cls(0.1)
  @tf.function
  def inner(i):
    opt.apply_gradients([(_grad(i), w)])
  @tf.function
  def step(i):
    inner(i)
    return w.read_value()
  return step, [w]


def _two_optimizers_on_one_variable(cls):
  w, first, second = tf.Variable(tf.ones([SIZE])), cls(0.1), cls(0.01, name="Second")
  @tf.function
  def step(i):
    first.apply_gradients([(_grad(i), w)])
    second.apply_gradients([(_grad(i + 1), w)])
    return w.read_value()
  return step, [w]


def _one_variable_of_many_read_back(cls):
  ws = [tf.Variable(tf.ones([SIZE // 4])) for _ in range(4)]
  opt = cls(0.1)
  @tf.function
  def step(i):
    opt.apply_gradients([(tf.fill([SIZE // 4], 0.3 * tf.cast(i + k, tf.float32)), w)
                         for k, w in enumerate(ws)])
    return ws[2].read_value()
  return step, ws


CASES = [_apply_then_read, _apply_then_assign, _assign_then_apply, _read_before_apply,
         _ema_after_apply, _slots_and_powers_read_after_apply, _cond_branch_applies_then_read,
         _while_loop_applies_then_read, _inner_function_applies_then_read,
         _two_optimizers_on_one_variable, _one_variable_of_many_read_back]


def _run(case, cls):
  step, variables = case(cls)
  observed = [step(tf.constant(i)).numpy() for i in range(CALLS)]
  return observed, [v.numpy() for v in variables]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_every_call_observes_what_stock_observes(case):
  stock_seen, stock_final = _run(case, OPTIMIZERS["stock"])
  ours_seen, ours_final = _run(case, OPTIMIZERS["ours"])
  for call, (ours, stock) in enumerate(zip(ours_seen, stock_seen)):
    np.testing.assert_array_equal(ours.view(np.uint32), stock.view(np.uint32),
                                  err_msg=f"call {call}: what the step observed differs from stock")
  for ours, stock in zip(ours_final, stock_final):
    np.testing.assert_array_equal(ours.view(np.uint32), stock.view(np.uint32))


# --- structure -----------------------------------------------------------------------------------

def _reaches(graph):
  """op -> the set of ops it can reach along data and control edges."""
  successors = {op: set() for op in graph.get_operations()}
  for op in graph.get_operations():
    for tensor in op.inputs:
      successors[tensor.op].add(op)
    for control in op.control_inputs:
      successors[control].add(op)
  reach = {}
  def visit(op):
    if op not in reach:
      reach[op] = set()
      for nxt in successors[op]:
        reach[op] |= {nxt} | visit(nxt)
    return reach[op]
  for op in graph.get_operations():
    visit(op)
  return reach


def _ops_on(graph, handle):
  """The stateful ops of `graph` that take the captured placeholder of eager handle `handle` (none
  if nothing in the function captured it)."""
  placeholder = {id(ext): internal for ext, internal in graph.captures}.get(id(handle))
  if placeholder is None:
    return []
  return [op for op in graph.get_operations()
          if op._is_stateful and any(t is placeholder for t in op.inputs)]


@pytest.mark.parametrize("case", [_apply_then_read, _apply_then_assign, _assign_then_apply,
                                  _read_before_apply, _ema_after_apply,
                                  _two_optimizers_on_one_variable,
                                  _one_variable_of_many_read_back],
                         ids=lambda c: c.__name__.strip("_"))
def test_the_traced_graph_orders_the_multi_tensor_op_with_every_op_on_its_variables(case):
  step, variables = case(OPTIMIZERS["ours"])
  graph = step.get_concrete_function(tf.constant(0)).graph
  multi = [op for op in graph.get_operations() if op.type in MULTI_OPS]
  assert multi, "the step has no multi-tensor op"
  reach = _reaches(graph)
  order = {op: i for i, op in enumerate(graph.get_operations())}
  checked = 0
  for var in variables:
    others = _ops_on(graph, var.handle)
    for op in multi:
      for other in others:
        first, second = sorted((op, other), key=order.get)
        assert second in reach[first], f"{first.type} ({first.name}) is not ordered before " \
                                       f"{second.type} ({second.name})"
        checked += 1
  for first, second in zip(multi, multi[1:]):  # two optimizers' ops on one variable
    assert second in reach[first]
  assert checked or case is _two_optimizers_on_one_variable


def test_a_variable_no_other_op_touches_is_not_captured():
  """No per-variable capture cost: a step over 50 variables captures its packed vectors, the beta
  powers and what the gradients need, not 150 handles."""
  ws = [tf.Variable(tf.ones([4])) for _ in range(50)]
  opt = OPTIMIZERS["ours"](0.1)
  @tf.function
  def step():
    opt.apply_gradients([(tf.ones([4]), w) for w in ws])
  graph = step.get_concrete_function().graph
  assert len(graph.captures) <= 6, [internal.name for _, internal in graph.captures]


# --- tf.compat.v1.wrap_function: TF1 semantics (no automatic control dependencies) ---------------

def _wrapped_step(cls, variables_inside):
  """A wrap_function whose step is ordered as TF1 code orders it, by control dependencies on the
  train op; returns a function of no arguments giving what it read after the step."""
  outside = tf.Variable(tf.ones([SIZE]))
  def step():
    if variables_inside:
      w = tf.compat.v1.get_variable("w", [SIZE], initializer=tf.compat.v1.ones_initializer(),
                                    use_resource=True)
    else:
      w = outside
    opt = cls(0.1)
    train = opt.apply_gradients([(tf.fill([SIZE], 0.5), w)])
    with tf.control_dependencies([train]):
      return w.read_value()
  wrapped = tf.compat.v1.wrap_function(step, [])
  return wrapped


@pytest.mark.parametrize("variables_inside", [False, True], ids=["captured", "created-inside"])
def test_wrap_function_steps_equal_stocks(variables_inside):
  results = {}
  for name in ("stock", "ours"):
    wrapped = _wrapped_step(OPTIMIZERS[name], variables_inside)
    results[name] = [wrapped().numpy() for _ in range(CALLS)]
  for call, (ours, stock) in enumerate(zip(results["ours"], results["stock"])):
    np.testing.assert_array_equal(ours.view(np.uint32), stock.view(np.uint32),
                                  err_msg=f"call {call}")
