"""The composite XLA path: training steps under tf.function(jit_compile=True) where the ops' XLA
kernels are not used (TF_ADAM_OP_XLA_KERNELS=0 here; a build without them, or variables off the
CPU). The optimizer then emits stock's XLA-compilable ops (tf_adam_op/v1/xla_composite.py), and its
numbers are
compared with stock under XLA. The kernel path is test_xla_kernels.py's."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal
import tf_adam_op
from tf_adam_op._step import xla as _xla


@pytest.fixture(autouse=True)
def composite_path(monkeypatch):
  monkeypatch.setenv(_xla.KERNELS_ENVIRONMENT_VARIABLE, "0")

STEPS = 6


def _train(cls, jit_compile, dtype=np.float32, sparse=False, **kwargs):
  var = tf.Variable(np.linspace(-1, 1, 24).reshape(8, 3).astype(dtype))
  opt = cls(0.05, **kwargs)

  @tf.function(jit_compile=jit_compile)
  def step(scale):
    with tf.GradientTape() as tape:
      rows = tf.gather(var, [0, 5, 0, 7]) if sparse else var
      loss = tf.reduce_sum(tf.square(rows * tf.cast(scale, var.dtype)))
    opt.apply_gradients([(tape.gradient(loss, var), var)])

  for i in range(STEPS):
    step(tf.constant(1.0 + i))
  if jit_compile:  # the composite ran: no custom call was compiled
    assert "custom_call_target" not in step.experimental_get_compiler_ir(tf.constant(1.0))(
        stage="hlo")
  return [var.numpy(), *[opt.get_slot(var, s).numpy() for s in opt.get_slot_names()],
          *[p.numpy() for p in opt._get_beta_accumulators()]]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_xla_step_compiles_and_equals_stock_under_xla(dtype, sparse):
  ours = _train(OPTIMIZERS["ours"], True, dtype, sparse)
  stock = _train(OPTIMIZERS["stock"], True, dtype, sparse)
  assert_bitwise_equal(ours, stock)


def test_xla_lazy_sparse_step_matches_the_lazy_op():
  xla = _train(tf_adam_op.AdamOptimizer, True, sparse=True, lazy=True)
  op = _train(tf_adam_op.AdamOptimizer, False, sparse=True, lazy=True)
  for a, b in zip(xla, op):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert np.array_equal(xla[1][1], np.zeros(3, np.float32))  # row 1 never named: m untouched


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=["float16", "bfloat16"])
def test_xla_low_precision_follows_the_float32_rule(dtype):
  np_dtype = dtype.as_numpy_dtype
  xla = _train(tf_adam_op.AdamOptimizer, True, np_dtype)
  op = _train(tf_adam_op.AdamOptimizer, False, np_dtype)
  for a, b in zip(xla, op):  # one rounding to 16 bits either way; XLA may order float ops alike
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                               rtol=1e-2, atol=1e-3)


VARIANTS = {"amsgrad": lambda lr, **kw: tf_adam_op.AdamOptimizer(lr, amsgrad=True, **kw),
            "adamw": lambda lr, **kw: tf_adam_op.AdamWOptimizer(0.02, lr, **kw),
            "adamw_amsgrad": lambda lr, **kw: tf_adam_op.AdamWOptimizer(0.02, lr, amsgrad=True, **kw)}


@pytest.mark.parametrize("sparse, lazy", [(False, False), (True, False), (True, True)],
                         ids=["dense", "sparse", "sparse_lazy"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_xla_amsgrad_and_adamw_steps_compile_and_follow_the_op(dtype, variant, sparse, lazy):
  """Under XLA the composite (stock has no XLA kernel for AMSGrad, nor any AdamW) runs the rule in
  the op's order; XLA's CPU compiler may contract a multiply and an add into one FMA, which rounds
  once where the op rounds twice (measured: 1 ulp here and there), so within 1e-6 relative. The
  variant really ran: the decay moves var elsewhere than plain Adam; AMSGrad's vhat was written."""
  xla = _train(VARIANTS[variant], True, dtype, sparse, lazy=lazy)
  op = _train(VARIANTS[variant], False, dtype, sparse, lazy=lazy)
  assert len(xla) == len(op) == (6 if "amsgrad" in variant else 5)  # var, slots, powers
  for a, b in zip(xla, op):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  if "adamw" in variant:
    plain = _train(tf_adam_op.AdamOptimizer, True, dtype, sparse, lazy=lazy)
    assert np.max(np.abs(plain[0] - xla[0])) > 1e-4
  if "amsgrad" in variant:
    v, vhat = xla[2], xla[3]
    assert np.all(vhat >= v) and np.any(vhat > 0)
