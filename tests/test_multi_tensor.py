"""The multi-tensor ops (ResourceApplyAdamV1Multi, ...NoAdvance) against the NumPy reference and
stock's per-variable kernel, and their all-or-nothing rule (docs/errors.md, multi-tensor op)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gen_training_ops

from helpers import assert_bitwise_equal
from numpy_reference import BFLOAT16, adam_step
import tf_adam_op  # noqa: F401  (registers the ops)
from tf_adam_op import ops

DTYPES = {"float16": np.float16, "bfloat16": BFLOAT16, "float32": np.float32, "float64": np.float64}
# Sizes 0, 1 and odd ones, and a total above the sharding threshold (2^15), so the update is split
# over threads by total elements and shard edges fall inside tensors.
SHAPES = [(0,), (1,), (7,), (3, 5), (0, 4), (1023,), (2**16 + 3,), (1,), (129, 33)]
# float32 powers under NumPy 1 too (there a float32 scalar ** int is float64).
B1P, B2P = np.float32(np.float32(0.9)**3), np.float32(np.float32(0.999)**3)
HYPER = dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)


def _state(rng, shapes, dtype):
  states = []
  for shape in shapes:
    var = rng.standard_normal(shape).astype(dtype)
    m = (0.1 * rng.standard_normal(shape)).astype(dtype)
    v = np.abs(0.01 * rng.standard_normal(shape)).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    states.append((var, m, v, grad))
  return states


def _variables(states):
  return [[tf.Variable(x) for x in state[:3]] for state in states]


def _handles(variables, k):
  return [triple[k].handle for triple in variables]


def _values(variables):
  return [[x.numpy() for x in triple] for triple in variables]


@pytest.mark.parametrize("use_nesterov", [False, True], ids=["plain", "nesterov"])
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_multi_op_matches_reference_and_advances_powers(rng, dtype, use_nesterov):
  states = _state(rng, SHAPES, dtype)
  variables = _variables(states)
  beta1_power, beta2_power = tf.Variable(B1P), tf.Variable(B2P)
  ops.resource_apply_adam_v1_multi(
      _handles(variables, 0), _handles(variables, 1), _handles(variables, 2), beta1_power.handle,
      beta2_power.handle, *HYPER.values(), [tf.constant(s[3]) for s in states],
      use_nesterov=use_nesterov)
  for state, actual in zip(states, _values(variables)):
    expected = adam_step(*state, B1P, B2P, *HYPER.values(), use_nesterov=use_nesterov)
    assert_bitwise_equal(actual, expected)
  # Advanced after the updates, in float32, as stock's _finish does: beta_power * beta.
  assert_bitwise_equal([beta1_power.numpy(), beta2_power.numpy()],
                       [B1P * np.float32(0.9), B2P * np.float32(0.999)], names=("b1p", "b2p"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_multi_op_matches_stock_kernel_per_variable(rng, dtype):
  states = _state(rng, SHAPES, dtype)
  ours, stock = _variables(states), _variables(states)
  scalars = [tf.constant(x, dtype) for x in (B1P, B2P, *HYPER.values())]
  ops.resource_apply_adam_v1_multi_no_advance(
      _handles(ours, 0), _handles(ours, 1), _handles(ours, 2), *scalars,
      [tf.constant(s[3]) for s in states])
  for state, (var, m, v) in zip(states, stock):
    gen_training_ops.resource_apply_adam(var.handle, m.handle, v.handle, *scalars,
                                         tf.constant(state[3]))
  for a, b in zip(_values(ours), _values(stock)):
    assert_bitwise_equal(a, b)


def test_no_advance_variant_leaves_powers_to_the_caller(rng):
  states = _state(rng, [(5,), (9, 2)], np.float32)
  variables = _variables(states)
  ops.resource_apply_adam_v1_multi_no_advance(
      _handles(variables, 0), _handles(variables, 1), _handles(variables, 2), B1P, B2P,
      *HYPER.values(), [tf.constant(s[3]) for s in states])
  for state, actual in zip(states, _values(variables)):
    assert_bitwise_equal(actual, adam_step(*state, B1P, B2P, *HYPER.values()))


def test_packed_and_listed_handles_are_the_same_call(rng):
  states = _state(rng, [(4,), (6,)], np.float32)
  listed, packed = _variables(states), _variables(states)
  grads = [tf.constant(s[3]) for s in states]
  ops.resource_apply_adam_v1_multi_no_advance(
      _handles(listed, 0), _handles(listed, 1), _handles(listed, 2), B1P, B2P, *HYPER.values(),
      grads)
  ops.resource_apply_adam_v1_multi_no_advance(
      *(ops.pack_handles(_handles(packed, k)) for k in range(3)), B1P, B2P, *HYPER.values(), grads)
  for a, b in zip(_values(listed), _values(packed)):
    assert_bitwise_equal(a, b)


def test_multi_op_in_a_tf1_graph(rng):
  states = _state(rng, [(3,), (2, 2)], np.float32)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    variables = [[tf.compat.v1.Variable(x, use_resource=True) for x in s[:3]] for s in states]
    powers = [tf.compat.v1.Variable(p, use_resource=True) for p in (B1P, B2P)]
    step = ops.resource_apply_adam_v1_multi(
        _handles(variables, 0), _handles(variables, 1), _handles(variables, 2),
        powers[0].handle, powers[1].handle, *HYPER.values(), [s[3] for s in states])
    session.run(tf.compat.v1.global_variables_initializer())
    session.run(step)
    actual = session.run(variables)
  for state, values in zip(states, actual):
    assert_bitwise_equal(values, adam_step(*state, B1P, B2P, *HYPER.values()))


# --- docs/errors.md, multi-tensor op: one bad tensor among N -> an error, none of the N updated ---

def _bad_case(rng, corrupt):
  """Four good (var, m, v, grad), then `corrupt` edits one; returns the op call and a snapshot."""
  states = _state(rng, [(6,), (2, 3), (5,), (4,)], np.float32)
  variables = _variables(states)
  grads = [tf.constant(s[3]) for s in states]
  powers = [tf.Variable(B1P), tf.Variable(B2P)]
  corrupt(variables, grads, powers)

  def call():
    handles = [[t[k].handle for t in variables] for k in range(3)]
    ops.resource_apply_adam_v1_multi(*handles, powers[0].handle, powers[1].handle,
                                     *HYPER.values(), grads)

  def snapshot():
    values = []
    for var in [x for t in variables for x in t] + powers:
      try:
        values.append(var.numpy())
      except (tf.errors.OpError, ValueError):
        values.append(None)  # a deleted variable
    return values
  return call, snapshot


def _set(index, k, value):
  def corrupt(variables, grads, powers):
    variables[index][k] = value
  return corrupt


def _set_grad(index, value):
  def corrupt(variables, grads, powers):
    grads[index] = value
  return corrupt


class _NeverAssigned:
  """A variable handle whose resource was never created (an uninitialized variable)."""

  def __init__(self):
    self.handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[5],
                                         shared_name="tf_adam_op_test_never_assigned")

  def numpy(self):
    raise ValueError("uninitialized")


def _set_power(k, value):
  def corrupt(variables, grads, powers):
    powers[k] = value
  return corrupt


BAD_CASES = {
    "m_shape": (_set(2, 1, tf.Variable(np.zeros(6, np.float32))), tf.errors.InvalidArgumentError,
                "do not have the same shape"),
    "grad_shape": (_set_grad(3, tf.zeros((2, 2))), tf.errors.InvalidArgumentError,
                   "do not have the same shape"),
    "v_dtype": (_set(1, 2, tf.Variable(np.zeros((2, 3), np.float64))),
                tf.errors.InvalidArgumentError, "dtype"),
    "uninitialized": (lambda variables, grads, powers: variables[2].__setitem__(0, _NeverAssigned()),
                      tf.errors.FailedPreconditionError, "uninitialized"),
    "same_variable_twice": (lambda variables, grads, powers: variables[3].__setitem__(
        2, variables[0][1]), tf.errors.InvalidArgumentError, "same variable"),
    "beta_power_dtype": (_set_power(0, tf.Variable(np.float64(0.9))),
                         tf.errors.InvalidArgumentError, "beta1_power"),
    "beta_power_not_scalar": (_set_power(1, tf.Variable([0.9, 0.9])),
                              tf.errors.InvalidArgumentError, "scalar"),
}


@pytest.mark.parametrize("case", BAD_CASES.keys())
def test_27_one_bad_tensor_updates_none(rng, case):
  corrupt, error, message = BAD_CASES[case]
  call, snapshot = _bad_case(rng, corrupt)
  before = snapshot()
  with pytest.raises(error, match=message):
    call()
  for a, b in zip(snapshot(), before):
    if b is not None:
      assert_bitwise_equal([a], [b], names=("value",))


def test_27_packed_vector_of_the_wrong_length(rng):
  states = _state(rng, [(3,), (3,)], np.float32)
  variables = _variables(states)
  with pytest.raises(tf.errors.InvalidArgumentError, match="must hold the 2 variables"):
    ops.resource_apply_adam_v1_multi_no_advance(
        _handles(variables, 0)[:1], _handles(variables, 1), _handles(variables, 2), B1P, B2P,
        *HYPER.values(), [tf.constant(s[3]) for s in states])
  for state, actual in zip(states, _values(variables)):
    assert_bitwise_equal(actual, state[:3])
