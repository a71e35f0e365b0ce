"""AMSGrad and decoupled weight decay in the raw ops, _core and the GPU bodies' emulation: against
the NumPy rule from the published formulas (every dtype, bit for bit) and stock's own AMSGrad kernel
(ResourceApplyAdamWithAmsgrad, float32/float64, bit for bit); bad inputs change nothing."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_bitwise_equal
from numpy_reference import BFLOAT16, sparse_variant_step, variant_step
import tf_adam_op
from helpers import gpu_emulation
from tf_adam_op import _core

DTYPES = {"float16": np.float16, "bfloat16": BFLOAT16, "float32": np.float32, "float64": np.float64}
# Step 3's beta powers as float32 accumulators hold them (np.float32 again: under NumPy 1, which TF
# 2.15 needs, a float32 scalar to a power is a float64).
SCALARS = dict(beta1_power=np.float32(np.float32(0.9)**3), beta2_power=np.float32(np.float32(0.999)**3),
               lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
WEIGHT_DECAY = 0.04
# (amsgrad, weight decay convention): every combination but the plain rule (test_raw_ops has it).
VARIANTS = {"amsgrad": (True, None), "decay": (False, "var"), "decay_lr": (False, "var_lr"),
            "amsgrad_decay": (True, "var"), "amsgrad_decay_lr": (True, "var_lr")}
NAMES = ("var", "m", "v", "vhat")


def _state(rng, shape, dtype):
  var = rng.standard_normal(shape).astype(dtype)
  m = (0.1 * rng.standard_normal(shape)).astype(dtype)
  v = np.abs(0.01 * rng.standard_normal(shape)).astype(dtype)
  # vhat above v in some places and below in others, so max() picks both.
  vhat = (v * rng.uniform(0.5, 1.5, shape)).astype(dtype)
  return var, m, v, vhat


def _options(variant):
  amsgrad, decay = VARIANTS[variant]
  return amsgrad, (None if decay is None else WEIGHT_DECAY), decay == "var_lr"


def _tf_scalars(dtype):
  compute = tf_adam_op.ops.compute_dtype(dtype)
  return [tf.constant(x, compute) for x in SCALARS.values()]


def _expected(var, m, v, vhat, grad, variant, use_nesterov=False):
  amsgrad, decay, times_lr = _options(variant)
  out = variant_step(var, m, v, vhat if amsgrad else None, grad, *SCALARS.values(),
                     weight_decay=decay, times_lr=times_lr, use_nesterov=use_nesterov)
  return [x for x in out if x is not None]


def _values(*variables):
  return [x.numpy() for x in variables]


@pytest.mark.parametrize("use_nesterov", [False, True], ids=["adam", "nesterov"])
@pytest.mark.parametrize("size", [7, 1023, 2**16 + 5])  # the last is sharded over the pool
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_dense_resource_op_and_core_match_the_rule(rng, dtype, variant, size, use_nesterov):
  amsgrad, decay, times_lr = _options(variant)
  state = _state(rng, size, dtype)
  grad = rng.standard_normal(size).astype(dtype)
  expected = _expected(*state, grad, variant, use_nesterov)

  var, m, v, vhat = (tf.Variable(x) for x in state)
  tf_adam_op.ops.resource_apply_adam_v1(
      var.handle, m.handle, v.handle, *_tf_scalars(dtype), tf.constant(grad),
      use_nesterov=use_nesterov, vhat=vhat.handle if amsgrad else None, weight_decay=decay,
      weight_decay_times_lr=times_lr)
  assert_bitwise_equal(_values(var, m, v, vhat)[:len(expected)], expected, NAMES)

  core = [x.copy() for x in state]
  _core.apply_adam(*core[:3], grad, *SCALARS.values(), use_nesterov=use_nesterov,
                   vhat=core[3] if amsgrad else None, weight_decay=decay,
                   weight_decay_times_lr=times_lr)
  assert_bitwise_equal(core[:len(expected)], expected, NAMES)


@pytest.mark.parametrize("size", [1, 7, 1023, 2**20 + 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_amsgrad_equals_stocks_kernel(rng, dtype, size):
  state = _state(rng, size, dtype)
  grad = tf.constant(rng.standard_normal(size).astype(dtype))
  ours = [tf.Variable(x) for x in state]
  stock = [tf.Variable(x) for x in state]
  scalars = _tf_scalars(dtype)
  tf_adam_op.ops.resource_apply_adam_v1(*(x.handle for x in ours[:3]), *scalars, grad,
                                        vhat=ours[3].handle)
  tf.raw_ops.ResourceApplyAdamWithAmsgrad(
      var=stock[0].handle, m=stock[1].handle, v=stock[2].handle, vhat=stock[3].handle,
      beta1_power=scalars[0], beta2_power=scalars[1], lr=scalars[2], beta1=scalars[3],
      beta2=scalars[4], epsilon=scalars[5], grad=grad)
  assert_bitwise_equal(_values(*ours), _values(*stock), NAMES)


def test_amsgrad_nan_positions_equal_stocks(rng):
  """A NaN gradient in v: stock's max keeps the old vhat (Eigen's cwiseMax); so does ours."""
  state = _state(rng, 64, np.float32)
  grad = rng.standard_normal(64).astype(np.float32)
  grad[[3, 17]] = np.nan
  state[3][[5]] = np.nan
  ours, stock = [tf.Variable(x) for x in state], [tf.Variable(x) for x in state]
  scalars = _tf_scalars(np.float32)
  tf_adam_op.ops.resource_apply_adam_v1(*(x.handle for x in ours[:3]), *scalars,
                                        tf.constant(grad), vhat=ours[3].handle)
  tf.raw_ops.ResourceApplyAdamWithAmsgrad(
      var=stock[0].handle, m=stock[1].handle, v=stock[2].handle, vhat=stock[3].handle,
      beta1_power=scalars[0], beta2_power=scalars[1], lr=scalars[2], beta1=scalars[3],
      beta2=scalars[4], epsilon=scalars[5], grad=tf.constant(grad))
  for name, a, b in zip(NAMES, _values(*ours), _values(*stock)):
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
    np.testing.assert_array_equal(a[~np.isnan(a)], b[~np.isnan(b)], err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_ref_op_matches_the_rule_in_a_session(rng, dtype, variant):
  amsgrad, decay, times_lr = _options(variant)
  state = _state(rng, 1023, dtype)
  grad = rng.standard_normal(1023).astype(dtype)
  expected = _expected(*state, grad, variant)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v, vhat = (tf.compat.v1.Variable(x, use_resource=False) for x in state)
    out = tf_adam_op.ops.apply_adam_v1(var, m, v, *SCALARS.values(), grad,
                                       vhat=vhat if amsgrad else None, weight_decay=decay,
                                       weight_decay_times_lr=times_lr)
    session.run(tf.compat.v1.global_variables_initializer())
    session.run(out.op)
    assert_bitwise_equal(session.run([var, m, v, vhat])[:len(expected)], expected, NAMES)


def _multi_state(rng, dtype, sizes=(0, 5, 300, 2**15 + 1)):
  return [_state(rng, s, dtype) for s in sizes], [rng.standard_normal(s).astype(dtype) for s in sizes]


@pytest.mark.parametrize("advance", [True, False], ids=["advancing", "no_advance"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_multi_tensor_ops_match_the_rule(rng, dtype, variant, advance):
  amsgrad, decay, times_lr = _options(variant)
  states, grads = _multi_state(rng, dtype)
  tensors = [[tf.Variable(x) for x in state] for state in states]
  handles = [[t[k].handle for t in tensors] for k in range(4)]
  extra = dict(vhats=handles[3] if amsgrad else None, weight_decay=decay,
               weight_decay_times_lr=times_lr)
  tf_grads = [tf.constant(g) for g in grads]
  if advance:
    powers = [tf.Variable(np.float32(SCALARS[k])) for k in ("beta1_power", "beta2_power")]
    tf_adam_op.ops.resource_apply_adam_v1_multi(
        *handles[:3], powers[0].handle, powers[1].handle, *list(SCALARS.values())[2:], tf_grads,
        **extra)
    assert powers[0].numpy() == np.float32(SCALARS["beta1_power"]) * np.float32(0.9)
  else:
    tf_adam_op.ops.resource_apply_adam_v1_multi_no_advance(*handles[:3], *SCALARS.values(),
                                                           tf_grads, **extra)
  for state, grad, variables in zip(states, grads, tensors):
    expected = _expected(*state, grad, variant)
    assert_bitwise_equal(_values(*variables)[:len(expected)], expected, NAMES)


@pytest.mark.parametrize("lazy", [False, True], ids=["stock_rule", "lazy"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_sparse_ops_match_the_rule(rng, dtype, variant, lazy):
  amsgrad, decay, times_lr = _options(variant)
  state = _state(rng, (40, 6), dtype)
  indices = np.array([3, 17, 3, 39, 0, 17, 17], np.int64)  # duplicates: summed, decayed once
  grad = rng.standard_normal((len(indices), 6)).astype(dtype)
  expected = [x for x in sparse_variant_step(
      *state[:3], state[3] if amsgrad else None, grad, indices, *SCALARS.values(), lazy=lazy,
      weight_decay=decay, times_lr=times_lr) if x is not None]
  extra = dict(lazy=lazy, weight_decay=decay, weight_decay_times_lr=times_lr)

  var, m, v, vhat = (tf.Variable(x) for x in state)
  tf_adam_op.ops.resource_sparse_apply_adam_v1(
      var.handle, m.handle, v.handle, *_tf_scalars(dtype), tf.constant(grad), tf.constant(indices),
      vhat=vhat.handle if amsgrad else None, **extra)
  assert_bitwise_equal(_values(var, m, v, vhat)[:len(expected)], expected, NAMES)

  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    refs = [tf.compat.v1.Variable(x, use_resource=False) for x in state]
    out = tf_adam_op.ops.sparse_apply_adam_v1(
        *refs[:3], *SCALARS.values(), grad, indices, vhat=refs[3] if amsgrad else None, **extra)
    session.run(tf.compat.v1.global_variables_initializer())
    session.run(out.op)
    assert_bitwise_equal(session.run(refs)[:len(expected)], expected, NAMES)


@pytest.mark.parametrize("threads", [1, 37])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_gpu_bodies_match_the_rule(rng, dtype, variant, threads):
  """The CUDA kernels' bodies, emulated on the CPU: dense, multi-tensor (two launches) and sparse."""
  emulation = gpu_emulation()
  amsgrad, decay, times_lr = _options(variant)
  hyper = list(SCALARS.values())
  extra = dict(weight_decay=decay, weight_decay_times_lr=times_lr, threads=threads)

  state = [x.copy() for x in _state(rng, 300, dtype)]
  grad = rng.standard_normal(300).astype(dtype)
  expected = _expected(*state, grad, variant)
  emulation.emulate_gpu_dense(*state[:3], grad, *hyper, vhat=state[3] if amsgrad else None, **extra)
  assert_bitwise_equal(state[:len(expected)], expected, NAMES)

  states, grads = _multi_state(rng, dtype, sizes=[3, 0, 70] * 20)  # 60 tensors: two launches
  states = [[x.copy() for x in s] for s in states]
  expected = [_expected(*s, g, variant) for s, g in zip(states, grads)]
  emulation.emulate_gpu_multi([s[0] for s in states], [s[1] for s in states], [s[2] for s in states],
                          grads, *hyper, vhats=[s[3] for s in states] if amsgrad else None, **extra)
  for s, e in zip(states, expected):
    assert_bitwise_equal(s[:len(e)], e, NAMES)

  for lazy in (False, True):
    state = [x.copy() for x in _state(rng, (20, 3), dtype)]
    indices = np.array([4, 0, 4, 19], np.int64)
    grad = rng.standard_normal((4, 3)).astype(dtype)
    expected = [x for x in sparse_variant_step(
        *state[:3], state[3] if amsgrad else None, grad, indices, *hyper, lazy=lazy,
        weight_decay=decay, times_lr=times_lr) if x is not None]
    emulation.emulate_gpu_sparse(*state[:3], grad, indices, *hyper, lazy=lazy,
                             vhat=state[3] if amsgrad else None, **extra)
    assert_bitwise_equal(state[:len(expected)], expected, NAMES)


# --- bad inputs: a clear error, nothing changed --------------------------------------------------

def _unchanged(variables, before):
  for x, b in zip(variables, before):
    assert np.array_equal(x.numpy(), b)


def test_bad_vhat_or_weight_decay_changes_nothing(rng):
  state = _state(rng, (4, 3), np.float32)
  variables = [tf.Variable(x) for x in state]
  var, m, v, vhat = variables
  wrong_shape = tf.Variable(np.zeros((3, 4), np.float32))
  grad = tf.constant(rng.standard_normal((4, 3)).astype(np.float32))
  scalars = _tf_scalars(np.float32)
  dense = lambda **kw: tf_adam_op.ops.resource_apply_adam_v1(var.handle, m.handle, v.handle,
                                                             *scalars, grad, **kw)
  with pytest.raises(tf.errors.InvalidArgumentError, match="var and vhat do not have the same shape"):
    dense(vhat=wrong_shape.handle)
  with pytest.raises(tf.errors.InvalidArgumentError, match="weight_decay is not a scalar"):
    dense(weight_decay=tf.constant([0.1, 0.2]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="same variable"):
    dense(vhat=m.handle)
  with pytest.raises(TypeError, match="weight_decay has dtype float64"):
    dense(weight_decay=tf.constant(0.1, tf.float64))
  with pytest.raises(ValueError, match="needs a weight_decay"):
    dense(weight_decay_times_lr=True)
  uninitialized = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[4, 3], shared_name="never_set")
  with pytest.raises(tf.errors.FailedPreconditionError, match="vhat"):
    dense(vhat=uninitialized)
  with pytest.raises(tf.errors.InvalidArgumentError, match="indices"):
    tf_adam_op.ops.resource_sparse_apply_adam_v1(
        var.handle, m.handle, v.handle, *scalars, grad[:2], tf.constant([0, 4]), vhat=vhat.handle,
        weight_decay=0.1)
  with pytest.raises(tf.errors.InvalidArgumentError, match="vhats must hold the 1"):
    tf_adam_op.ops.resource_apply_adam_v1_multi_no_advance(
        [var.handle], [m.handle], [v.handle], *scalars, [grad], vhats=[vhat.handle, vhat.handle])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"vars\[0\] and vhats\[0\]"):
    tf_adam_op.ops.resource_apply_adam_v1_multi_no_advance(
        [var.handle], [m.handle], [v.handle], *scalars, [grad], vhats=[wrong_shape.handle])
  _unchanged(variables, state)


def test_at_most_one_vhat_and_weight_decay():
  lib = tf_adam_op.ops._op_library
  handles = [tf.Variable(np.zeros(2, np.float32)).handle for _ in range(5)]
  scalars = [tf.constant(0.5)] * 6
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="at most one"):
    lib.resource_apply_adam_v1(*handles[:3], *scalars, tf.zeros(2), handles[3:], [], [])
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="at most one"):
    lib.resource_apply_adam_v1(*handles[:3], *scalars, tf.zeros(2), [], [tf.constant(0.1)] * 2, [])


def test_graphs_without_the_new_inputs_still_load():
  """A NodeDef written before vhat / weight_decay existed (no such attrs or inputs) runs as before."""
  graph_def = tf.compat.v1.GraphDef()
  with tf.Graph().as_default() as g:
    var = tf.compat.v1.Variable(np.ones(3, np.float32), use_resource=False, name="var")
    m = tf.compat.v1.Variable(np.zeros(3, np.float32), use_resource=False, name="m")
    v = tf.compat.v1.Variable(np.zeros(3, np.float32), use_resource=False, name="v")
    out = tf_adam_op.ops.apply_adam_v1(var, m, v, *SCALARS.values(), np.ones(3, np.float32),
                                       name="step")
    graph_def.CopyFrom(g.as_graph_def())
  node = next(n for n in graph_def.node if n.name == "step")
  for attr in ("n_vhat", "n_weight_decay", "weight_decay_times_lr"):
    del node.attr[attr]  # as an older version of the package wrote it
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    tf.graph_util.import_graph_def(graph_def, name="")
    session.run([f"{n}/Assign" for n in ("var", "m", "v")])
    session.run("step")
    expected = variant_step(np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32),
                            None, np.ones(3, np.float32), *SCALARS.values())[0]
    assert np.array_equal(session.run("var:0"), expected)
  del out
