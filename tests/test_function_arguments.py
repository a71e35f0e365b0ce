"""A v1 step in a tf.function that takes its variables as arguments, against stock.

TensorFlow reuses the trace of the first call for a later call with other variables of the same
specs (or the same ones reordered): it runs the trace with the new call's variable handles. Stock's
ops take `var.handle`, which stands for the argument there, and its slots are the ones looked up at
trace time; so a reordered call updates each argument with the slots of the variable that was at
its position in the first call. Ours must do the same (our multi-tensor ops take the variables as a
packed vector, which must then come from the arguments, not from the first call's variables).

The reference for 8-bit states (which stock does not have) and under XLA is that rule written out
in eager mode: swap the variables' values so that each argument's value sits in the first call's
variable at its position, take an eager step, swap back.
"""

import numpy as np
import pytest
import tensorflow as tf

import tf_adam_op
from helpers import assert_bitwise_equal
from tf_adam_op._step import xla

SIZE = 4096 + 100  # at the 8-bit threshold: 8-bit states, several blocks, a short last one
# Calls as positions into the variables: the first call's trace serves every later call.
CALL_SEQUENCES = {
    "reordered": [(0, 1), (1, 0), (0, 1), (1, 0)],
    "other variables": [(0, 1), (2, 3), (3, 0), (1, 2)],
    "repeated": [(0, 1, 2), (2, 2, 1), (1, 0, 0)],
}


def _initial_values(count):
  rng = np.random.default_rng(7)
  return [rng.standard_normal(SIZE).astype(np.float32) for _ in range(count)]


def _gradients(calls):
  rng = np.random.default_rng(11)
  return [[tf.constant(rng.standard_normal(SIZE).astype(np.float32)) for _ in call]
          for call in calls]


def _in_function(optimizer, variables, calls, gradients, jit_compile):
  @tf.function(jit_compile=jit_compile)
  def step(call_variables, call_gradients):
    optimizer.apply_gradients(zip(call_gradients, call_variables))
    # Read after the update: the packed vector must order the step with the argument's reads.
    return call_variables[0].read_value()

  read_after = []
  for call, grads in zip(calls, gradients):
    read_after.append(step([variables[k] for k in call], grads).numpy())
    if len(read_after) == 1:
      traces = step.experimental_get_tracing_count()  # two where the first call makes the slots
  if all(len(set(call)) == len(call) for call in calls):  # (a variable passed twice is a new trace)
    assert step.experimental_get_tracing_count() == traces  # the premise: one trace serves them all
  return read_after


def _eager_reference(optimizer, variables, calls, gradients):
  """Each call as the trace of calls[0] runs it: argument i with the slots of calls[0][i]."""
  traced = [variables[k] for k in calls[0]]
  read_after = []
  for call, grads in zip(calls, gradients):
    if len(set(call)) < len(call):
      raise ValueError("the eager reference cannot express a variable passed twice")
    arguments = [variables[k] for k in call]
    values = [a.numpy() for a in arguments]
    saved = {id(v): v.numpy() for v in traced + arguments}
    for slot_owner, value in zip(traced, values):
      slot_owner.assign(value)
    optimizer.apply_gradients(zip(grads, traced))
    updated = [t.numpy() for t in traced]
    for v in traced + arguments:
      v.assign(saved[id(v)])
    for argument, value in zip(arguments, updated):
      argument.assign(value)
    read_after.append(arguments[0].numpy())
  return read_after


def _run(make_optimizer, count, calls, mode):
  variables = [tf.Variable(x) for x in _initial_values(count)]
  optimizer = make_optimizer()
  gradients = _gradients(calls)
  if mode == "eager reference":
    read_after = _eager_reference(optimizer, variables, calls, gradients)
  else:
    read_after = _in_function(optimizer, variables, calls, gradients, mode == "xla")
  return [v.numpy() for v in variables], read_after


def _count(calls):
  return max(max(call) for call in calls) + 1


def _assert_same_run(actual, expected):
  assert_bitwise_equal(actual[0], expected[0], names=[f"variable {k}" for k in range(4)])
  assert_bitwise_equal(actual[1], expected[1], names=[f"read after call {k}" for k in range(4)])


@pytest.mark.parametrize("sequence", CALL_SEQUENCES)
def test_float_states_match_stock(sequence):
  calls = CALL_SEQUENCES[sequence]
  results = {name: _run(lambda cls=cls: cls(0.05), _count(calls), calls, "tf.function")
             for name, cls in (("stock", tf.compat.v1.train.AdamOptimizer),
                               ("ours", tf_adam_op.AdamOptimizer))}
  _assert_same_run(results["ours"], results["stock"])


@pytest.mark.parametrize("sequence", ["reordered", "other variables"])
def test_eager_reference_is_stocks_rule(sequence):
  """The reference gives stock's tf.function results with stock (under XLA stock's own kernel
  rounds an ulp differently: ours under XLA keeps the bits of the step without it)."""
  calls = CALL_SEQUENCES[sequence]
  make = lambda: tf.compat.v1.train.AdamOptimizer(0.05)
  _assert_same_run(_run(make, _count(calls), calls, "tf.function"),
                   _run(make, _count(calls), calls, "eager reference"))


@pytest.mark.parametrize("state_bits", [32, 8])
@pytest.mark.parametrize("mode", ["tf.function", "xla"])
@pytest.mark.parametrize("sequence", ["reordered", "other variables"])
def test_ours_follows_the_rule(sequence, mode, state_bits):
  """Under XLA without the ops' XLA kernels (TF before 2.21) the step is the composite: stock's own
  ops, so stock's XLA numbers; and 8-bit states are refused there (docs/xla.md)."""
  calls = CALL_SEQUENCES[sequence]
  make = lambda: tf_adam_op.AdamOptimizer(0.05, state_bits=state_bits)
  expected = _run(make, _count(calls), calls, "eager reference")
  if mode == "xla" and not xla.kernels_enabled():
    if state_bits == 8:
      with pytest.raises(NotImplementedError, match="8-bit states need the ops' XLA kernels"):
        _run(make, _count(calls), calls, mode)
      return
    expected = _run(lambda: tf.compat.v1.train.AdamOptimizer(0.05), _count(calls), calls, mode)
  in_function = _run(make, _count(calls), calls, mode)
  _assert_same_run(in_function, expected)
  # Not vacuous: the first call's variables updated in their first order end elsewhere.
  plain = _run(make, _count(calls), [calls[0]] * len(calls), "eager reference")
  assert not np.array_equal(plain[0][0], in_function[0][0])
