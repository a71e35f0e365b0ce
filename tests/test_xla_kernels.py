"""The ops' XLA kernels (cc/xla): under tf.function(jit_compile=True) every op compiles to one
custom call into the fused CPU loop, so a step gives the bits it gives outside XLA.

Each test checks both that the kernel path was taken (the compiled HLO has our custom call, and no
other path could have compiled the op) and the numbers against the op outside XLA, bit for bit.
The composite path (TF_ADAM_OP_XLA_KERNELS=0, or no XLA kernels in the build) is test_xla_composite.py's.
"""


import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_bitwise_equal
import tf_adam_op
from tf_adam_op import _loader
from tf_adam_op import ops
from xla_cases import DENSE_TARGET, SPARSE_TARGET, STEPS, _hlo, _twins

pytestmark = pytest.mark.skipif(not _loader.xla_kernels()[0],
                                reason=f"XLA kernels: {_loader.xla_kernels()[1]}")

DTYPES = {"float16": np.float16, "bfloat16": tf.bfloat16.as_numpy_dtype, "float32": np.float32,
          "float64": np.float64}
SCALARS = (0.9 ** 3, 0.999 ** 3, 0.01, 0.9, 0.999, 1e-7)  # beta powers, lr, beta1, beta2, epsilon


def _state(dtype, shape, seed, amsgrad=False):
  """var, m, v (and vhat): v and vhat non-negative, as an optimizer keeps them."""
  rng = np.random.default_rng(seed)
  values = [rng.standard_normal(shape), rng.standard_normal(shape) * 0.1,
            np.abs(rng.standard_normal(shape)) * 0.01]
  if amsgrad:
    values.append(np.abs(rng.standard_normal(shape)) * 0.02)
  return [x.astype(dtype) for x in values]


def _grads(dtype, shape, seed):
  rng = np.random.default_rng(seed + 100)
  return [tf.constant(rng.standard_normal(shape).astype(dtype)) for _ in range(STEPS)]


def _run_both(make_call, values, grads):
  """Runs make_call(variables, grad) STEPS times under XLA on one set and outside on the other;
  returns both final states and the XLA step's HLO."""
  xla_vars, op_vars = _twins(values)
  compiled = tf.function(lambda g: [make_call(xla_vars, g), None][1], jit_compile=True)
  hlo = _hlo(compiled, grads[0])
  for g in grads:
    compiled(g)
    make_call(op_vars, g)
  return [v.numpy() for v in xla_vars], [v.numpy() for v in op_vars], hlo


DENSE_VARIANTS = {
    "plain": {},
    "nesterov": {"use_nesterov": True},
    "amsgrad": {"amsgrad": True},
    "decay": {"weight_decay": 0.02},
    "decay_times_lr": {"weight_decay": 0.02, "weight_decay_times_lr": True},
    "one_minus_beta": {"one_minus_beta": (0.1, 0.001)},
}


@pytest.mark.parametrize("variant", DENSE_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_op_under_xla_is_the_op_bit_for_bit(dtype, variant):
  options = dict(DENSE_VARIANTS[variant])
  amsgrad = options.pop("amsgrad", False)
  shape = (300, 200)  # 60,000 elements: sharded over the pool, as outside XLA
  values = _state(DTYPES[dtype], shape, 1, amsgrad)

  def call(variables, grad):
    extra = dict(options, vhat=variables[3].handle) if amsgrad else options
    return ops.resource_apply_adam_v1(*(v.handle for v in variables[:3]), *SCALARS, grad, **extra)

  xla, op, hlo = _run_both(call, values, _grads(DTYPES[dtype], shape, 1))
  assert hlo.count(DENSE_TARGET) == 1
  assert "output_to_operand_aliasing" in hlo  # the update is in place
  assert_bitwise_equal(xla, op, names=("var", "m", "v", "vhat"))
  assert not np.array_equal(xla[0], values[0])


def test_dense_op_under_xla_with_an_empty_variable():
  values = _state(np.float32, (0, 4), 2)
  xla, op, _ = _run_both(
      lambda variables, grad: ops.resource_apply_adam_v1(*(v.handle for v in variables), *SCALARS,
                                                         grad),
      values, _grads(np.float32, (0, 4), 2))
  assert_bitwise_equal(xla, op)


@pytest.mark.parametrize("optimizer", ["v1", "keras", "keras lazy rows"])
def test_a_variable_with_no_rows_refuses_any_index_under_xla(optimizer):
  """XLA drops a custom call whose results are all empty, index check and all: the kernel refuses
  the indices while compiling (stock's and Keras's XLA steps refuse them too: XLA's scatter into
  a dimension of size zero), and nothing of the step runs."""
  table, dense = tf.Variable(tf.zeros([0, 4])), tf.Variable(tf.ones([3]))
  grad = tf.IndexedSlices(tf.ones([2, 4]), tf.constant([0, 1]), tf.constant([0, 4]))
  if optimizer == "v1":
    opt = tf_adam_op.AdamOptimizer(0.1)
    def v1_step():
      opt.apply_gradients([(grad, table), (tf.ones(3), dense)])
    step = tf.function(v1_step, jit_compile=True)
  else:
    from tf_adam_op import keras as tk
    opt = tk.Adam(0.1, lazy=optimizer == "keras lazy rows")
    opt.build([table, dense])
    step = tf.function(lambda: opt.apply([grad, tf.ones(3)], [table, dense]), jit_compile=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"no rows \(shape \[0,4\]\)"):
    step()
  assert dense.numpy().tolist() == [1, 1, 1]
  if optimizer != "v1":
    assert int(opt.iterations.numpy()) == 0


SPARSE_VARIANTS = {
    "stock_rule": {},
    "lazy": {"lazy": True},
    "scale_first": {"scale_first": True},
    "v_term": {"v_term": True},
    "dense_rule": {"dense_rule": True, "v_term": True},
    "dense_rule_lazy": {"dense_rule": True, "v_term": True, "lazy": True},
    "amsgrad_decay": {"amsgrad": True, "weight_decay": 0.02},
    "one_minus_beta": {"one_minus_beta": (0.1, 0.001), "weight_decay": 0.02,
                       "weight_decay_times_lr": True},
}


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_sparse_op_under_xla_is_the_op_bit_for_bit(dtype, variant, index_dtype):
  options = dict(SPARSE_VARIANTS[variant])
  amsgrad = options.pop("amsgrad", False)
  with_v_term = options.pop("v_term", False)
  shape = (4000, 16)  # 64,000 elements: every row decays, sharded
  values = _state(DTYPES[dtype], shape, 3, amsgrad)
  indices = tf.constant([5, 3999, 5, 0, 17, 5], index_dtype)  # duplicates, both ends
  rows = [tf.constant(g.numpy()[:6]) for g in _grads(DTYPES[dtype], shape, 3)]

  def call(variables, grad):
    extra = dict(options)
    if amsgrad:
      extra["vhat"] = variables[3].handle
    if with_v_term:
      extra["v_term"] = grad * grad
    return ops.resource_sparse_apply_adam_v1(*(v.handle for v in variables[:3]), *SCALARS, grad,
                                             indices, **extra)

  xla, op, hlo = _run_both(call, values, rows)
  assert hlo.count(SPARSE_TARGET) == 1
  assert_bitwise_equal(xla, op, names=("var", "m", "v", "vhat"))
  assert not np.array_equal(xla[1][5], values[1][5])  # the named row moved


def test_multi_tensor_op_under_xla_is_the_packed_op_bit_for_bit():
  """Two dtype groups (one op each), AMSGrad and the weight decay, sizes across the sharding
  threshold: the unpacked op under XLA against the packed NoAdvance op outside it."""
  shapes = [(50, 40), (0, 3), (300, 150), (7,)]
  for dtype in (np.float32, np.float64):
    values = [_state(dtype, s, 10 + i, amsgrad=True) for i, s in enumerate(shapes)]
    grads = [_grads(dtype, s, 10 + i) for i, s in enumerate(shapes)]
    xla_vars = [[tf.Variable(x) for x in v] for v in values]
    op_vars = [[tf.Variable(x) for x in v] for v in values]
    options = dict(weight_decay=0.01, weight_decay_times_lr=True)
    lists = lambda variables: [[v[k].handle for v in variables] for k in range(4)]

    @tf.function(jit_compile=True)
    def compiled(step_grads):
      var, m, v, vhat = lists(xla_vars)
      ops.resource_apply_adam_v1_multi_unpacked(var, m, v, *SCALARS, step_grads, vhats=vhat,
                                                **options)

    step_grads = lambda t: [g[t] for g in grads]
    assert _hlo(compiled, step_grads(0)).count(DENSE_TARGET) == 1
    for t in range(STEPS):
      compiled(step_grads(t))
      var, m, v, vhat = lists(op_vars)
      ops.resource_apply_adam_v1_multi_no_advance(var, m, v, *SCALARS, step_grads(t), vhats=vhat,
                                                  **options)
    for a, b in zip(xla_vars, op_vars):
      assert_bitwise_equal([x.numpy() for x in a], [x.numpy() for x in b],
                           names=("var", "m", "v", "vhat"))


def test_the_unpacked_op_outside_xla_is_the_packed_op():
  values = [_state(np.float32, (40, 3), 20 + i) for i in range(3)]
  grads = [tf.constant(np.full((40, 3), 0.5 + i, np.float32)) for i in range(3)]
  a = [[tf.Variable(x) for x in v] for v in values]
  b = [[tf.Variable(x) for x in v] for v in values]
  lists = lambda variables: [[v[k].handle for v in variables] for k in range(3)]
  ops.resource_apply_adam_v1_multi_unpacked(*lists(a), *SCALARS, grads, use_nesterov=True)
  ops.resource_apply_adam_v1_multi_no_advance(*lists(b), *SCALARS, grads, use_nesterov=True)
  for x, y in zip(a, b):
    assert_bitwise_equal([v.numpy() for v in x], [v.numpy() for v in y])


# --- errors: all or nothing ---------------------------------------------------------------------

def _unchanged(variables, values):
  for var, value in zip(variables, values):
    np.testing.assert_array_equal(var.numpy(), value)


def test_a_bad_index_under_xla_is_an_error_naming_it_and_changes_nothing():
  values = _state(np.float32, (10, 4), 30)
  variables = [tf.Variable(x) for x in values]

  @tf.function(jit_compile=True)
  def step(indices):
    ops.resource_sparse_apply_adam_v1(*(v.handle for v in variables), *SCALARS,
                                      tf.ones((3, 4)), indices)

  with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[2\] = 10 is not in \[0, 10\)"):
    step(tf.constant([1, 2, 10]))
  _unchanged(variables, values)
  step(tf.constant([1, 2, 9]))  # the same compiled step runs with good indices
  assert not np.array_equal(variables[0].numpy(), values[0])


@pytest.mark.parametrize("case", ["grad_shape", "same_variable", "not_scalar", "scalar_dtype"])
def test_a_bad_multi_tensor_step_under_xla_fails_to_compile_and_changes_nothing(case):
  values = [_state(np.float32, (6, 2), 40 + i) for i in range(2)]
  variables = [[tf.Variable(x) for x in v] for v in values]
  handles = [[v[k].handle for v in variables] for k in range(3)]
  grads = [tf.ones((6, 2)), tf.ones((6, 2))]
  scalars = list(SCALARS)
  # Shape inference catches what the graph's shapes show; the XLA kernel what they cannot.
  expected = {"grad_shape": "Dimension 0 in both shapes must be equal",
              "same_variable": r"vars\[0\] and ms\[1\] are the same variable",
              "not_scalar": "Shape must be rank 0",
              "scalar_dtype": "float"}[case]
  if case == "grad_shape":
    grads[1] = tf.ones((4, 2))
  elif case == "same_variable":
    handles[1][1] = handles[0][0]
  elif case == "not_scalar":
    scalars[2] = tf.constant([0.01, 0.01])

  @tf.function(jit_compile=True)
  def step():
    if case == "scalar_dtype":
      ops._op_library.resource_apply_adam_v1_multi_unpacked(
          *handles, *(tf.constant(s, tf.float64) for s in scalars), grads, vhats=[],
          weight_decay=[], one_minus_beta=[])
    else:
      ops.resource_apply_adam_v1_multi_unpacked(*handles, *scalars, grads)

  with pytest.raises((tf.errors.InvalidArgumentError, ValueError, TypeError), match=expected):
    step()
  for v, value in zip(variables, values):
    _unchanged(v, value)
