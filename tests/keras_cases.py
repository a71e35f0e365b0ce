"""What the Keras 3 optimizer tests share: the optimizer pairs (Keras's, ours) and small training
runs of them."""

import keras  # the test modules check for Keras 3 before importing this
import numpy as np
import tensorflow as tf
import tf_adam_op.keras as tk


PAIRS = {"Adam": (keras.optimizers.Adam, tk.Adam), "AdamW": (keras.optimizers.AdamW, tk.AdamW)}
SHAPES = [(40, 8), (8,), (3, 5, 2)]
STEPS = 5


def _gradients(dtype, sparse, seed=1):
  """STEPS lists of gradients for SHAPES; with `sparse` the first one is IndexedSlices with
  repeated indices."""
  rng = np.random.default_rng(seed)
  steps = []
  for _ in range(STEPS):
    grads = [tf.constant(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    if sparse:
      indices = tf.constant(rng.integers(0, SHAPES[0][0], 12))
      grads[0] = tf.IndexedSlices(tf.constant(rng.standard_normal((12, 8)).astype(dtype)),
                                  indices, tf.constant(SHAPES[0]))
    steps.append(grads)
  return steps


def _initial(dtype):
  rng = np.random.default_rng(0)
  return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _train(make_opt, dtype, mode, sparse, configure=None, names=("w", "b", "c")):
  variables = [keras.Variable(w, dtype=dtype, name=n) for w, n in zip(_initial(dtype), names)]
  opt = make_opt()
  if configure is not None:
    configure(opt, variables)

  def step(grads):
    opt.apply_gradients(zip(grads, variables))

  run = {"eager": step, "function": tf.function(step),
         "xla": tf.function(step, jit_compile=True)}[mode]
  for grads in _gradients(dtype, sparse):
    run(grads)
  state = [v.numpy() for v in variables] + [x.numpy() for x in opt.variables]
  # Paths without the optimizer's name, which Keras makes unique per process (adam, adam_1, ...).
  return state, [x.path.split("/", 1)[1] for x in opt.variables], opt
