"""What the AMSGrad/AdamW tests share: the optimizer pairs (ours, a stock-built reference), the
hyperparameters, and eager runs of them."""

import numpy as np
import pytest
import tensorflow as tf
from tf_adam_op.bench.stock_variants import ContribAdamW, StockAmsgrad
import tf_adam_op


STEPS = 21
FLOAT_DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
HYPER = dict(learning_rate=0.02, beta1=0.8, beta2=0.99, epsilon=1e-7)


# name -> (ours, stock reference, kwargs); the weight decay is positional for both AdamWs.
PAIRS = {
    "amsgrad": (lambda **kw: tf_adam_op.AdamOptimizer(amsgrad=True, **kw), StockAmsgrad),
    "adamw": (lambda **kw: tf_adam_op.AdamWOptimizer(0.03, **kw), lambda **kw: ContribAdamW(0.03, **kw)),
}


def _slots(opt, var):
  names = ["m", "v"] + (["vhat"] if "vhat" in opt.get_slot_names() else [])
  return [opt.get_slot(var, n) for n in names]


def _state(opt, variables):
  return [x.numpy() for var in variables for x in [var, *_slots(opt, var)]] + [
      p.numpy() for p in opt._get_beta_accumulators()]


def _names(n):
  return [f"{i}" for i in range(n)]


def _eager(make, inits, grads, function=False, **kwargs):
  variables = [tf.Variable(x) for x in inits]
  opt = make(**HYPER, **kwargs)

  def step(gs):
    opt.apply_gradients(zip(gs, variables))

  if function:
    step = tf.function(step)
  for gs in grads:
    step([tf.constant(g) for g in gs])
  return _state(opt, variables)


def _inits_and_grads(rng, dtypes):
  shapes = [(31, 7), (5,), (1,), (64, 64)]
  inits = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
  grads = [[rng.standard_normal(x.shape).astype(x.dtype) for x in inits] for _ in range(STEPS)]
  return inits, grads
