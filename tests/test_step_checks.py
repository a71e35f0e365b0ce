"""The v1 optimizers' step-level checks (docs/errors.md): a bad input among several variables is
an error before any write, in eager, tf.function and TF1 steps, also where only the running step
knows it (a shape unknown while tracing); a variable given twice is applied in turn, as stock."""

import numpy as np
import pytest
import tensorflow as tf

import tf_adam_op
from tf_adam_op._step import xla as _xla

STOCK = tf.compat.v1.train.AdamOptimizer


def _state(opt, variables):
  values = [v.numpy() for v in variables]
  values += [opt.get_slot(v, s).numpy() for v in variables for s in ("m", "v")]
  return values + [p.numpy() for p in opt._get_beta_accumulators()]


@pytest.mark.parametrize("cls", [tf_adam_op.AdamOptimizer, tf_adam_op.AdamWOptimizer])
def test_a_shape_known_only_when_the_step_runs_changes_nothing(cls):
  a = tf.Variable(np.full((3, 4), 0.5, np.float32))
  b = tf.Variable(np.full((3, 4), 0.5, np.float64))  # another dtype: another multi-tensor op
  opt = cls(0.01) if cls is tf_adam_op.AdamWOptimizer else cls(0.1)
  @tf.function(input_signature=[tf.TensorSpec([3, 4]), tf.TensorSpec([None, 4], tf.float64)])
  def step(ga, gb):
    opt.apply_gradients([(ga, a), (gb, b)])
  step(tf.ones((3, 4)), tf.ones((3, 4), tf.float64))
  before = _state(opt, [a, b])
  with pytest.raises(tf.errors.InvalidArgumentError, match="does not equal the variable"):
    step(tf.ones((3, 4)), tf.ones((2, 4), tf.float64))
  for x, y in zip(_state(opt, [a, b]), before):
    assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
@pytest.mark.parametrize("fused", [True, False])
def test_a_variable_given_twice_is_applied_in_turn_as_stock(mode, fused):
  results = []
  # Under XLA ours gives the bits of the step without XLA (docs/xla.md): stock's eager step here,
  # whose sparse v term is computed as written, as ours computes it under XLA. Without the ops'
  # XLA kernels (TF < 2.21, TF_ADAM_OP_XLA_KERNELS=0) the composite gives stock's XLA bits.
  stock_mode = "eager" if mode == "xla" and _xla.kernels_enabled() else mode
  for make, run_mode in ((lambda: STOCK(0.1), stock_mode),
                         (lambda: tf_adam_op.AdamOptimizer(0.1, fused=fused), mode)):
    v = tf.Variable(np.linspace(-1, 1, 12).reshape(3, 4).astype(np.float32))
    w = tf.Variable(np.ones(3, np.float32))
    opt = make()
    def step():
      sparse = tf.IndexedSlices(tf.ones((2, 4)) * 0.3, tf.constant([2, 2]), tf.constant([3, 4]))
      opt.apply_gradients([(tf.ones((3, 4)), v), (tf.ones(3), w), (sparse, v),
                           (-0.5 * tf.ones((3, 4)), v)])
    if run_mode != "eager":
      step = tf.function(step, jit_compile=(run_mode == "xla"))
    for _ in range(2):
      step()
    results.append(_state(opt, [v, w]))
  for x, y in zip(*results):
    assert x.tobytes() == y.tobytes()


def test_errors_name_the_optimizer():
  z = tf.Variable(tf.constant([1 + 1j], tf.complex64))
  with pytest.raises(ValueError, match="tf_adam_op.AdamWOptimizer cannot update"):
    tf_adam_op.AdamWOptimizer(0.01).apply_gradients([(tf.constant([1j], tf.complex64), z)])
