"""One optimizer step of a workload, built in each TensorFlow mode the benchmark measures.

Each builder takes the workload, a function making the optimizer, a seed and the TF device to build
on ("/CPU:0", "/GPU:0"), and returns (step, close): `step()` runs one apply_gradients (on the CPU it
returns when done; on a GPU when queued: see device.py); `close()` frees what it built. The
gradients are fixed, made once, so a step times the optimizer alone, not a gradient computation.
They reach the optimizer as a training step's gradients would: eager tensors in eager mode; in
tf.function and TF1 graphs, constants of the graph (a gradient computed inside the graph is neither
a per-call capture nor a variable read, which would add a per-variable cost that real training does
not pay).
"""

import numpy as np
import tensorflow as tf

from tf_adam_op.bench.workloads import SPARSE_BATCH, SPARSE_POOL

MODES = ("eager", "tf.function", "tf1-ref", "tf1-resource", "xla", "fit", "fit-xla")
KERAS_ONLY_MODES = ("fit", "fit-xla")  # Keras 3 training steps: Keras 3 optimizers only


def _initial_value(shape, seed):
  return tf.random.stateless_normal(shape, seed=[seed, 1])


def _dense_gradient(shape, seed):
  return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * np.float32(1e-3)


def _sparse_gradient_parts(shape, seed):
  """Values and indices of a batch drawn from SPARSE_POOL rows, so it has duplicates."""
  rng = np.random.default_rng(seed)
  pool = rng.integers(0, shape[0], size=min(SPARSE_POOL, shape[0]))
  indices = rng.choice(pool, size=SPARSE_BATCH).astype(np.int64)
  values = rng.standard_normal((SPARSE_BATCH,) + tuple(shape[1:])).astype(np.float32)
  return values, indices


def _gradient_arrays(workload, seed):
  """NumPy gradients: one array per variable, or (values, indices) for the sparse workload."""
  if workload.sparse:
    return _sparse_gradient_parts(workload.shapes[0], seed)
  return [_dense_gradient(shape, seed + i) for i, shape in enumerate(workload.shapes)]


def _constant(value, dtype=None):
  """A constant of the current graph, or in eager mode a tensor on the current device (an eager
  tf.constant stays in host memory and would be copied to a GPU at every use)."""
  constant = tf.constant(value, dtype=dtype)
  return constant if not tf.executing_eagerly() else tf.identity(constant)


def _gradients(workload, arrays):
  """Gradient tensors (dense, or one IndexedSlices) from _gradient_arrays, as constants of the
  current graph or eagerly."""
  if workload.sparse:
    values, indices = arrays
    return [tf.IndexedSlices(_constant(values), _constant(indices),
                             _constant(workload.shapes[0], dtype=tf.int64))]
  return [_constant(array) for array in arrays]


def _eager_variables(workload, seed):
  return [tf.Variable(_initial_value(shape, seed + i), name=f"w{i}")
          for i, shape in enumerate(workload.shapes)]


def eager_step(workload, make_optimizer, seed, device):
  with tf.device(device):
    variables = _eager_variables(workload, seed)
    pairs = list(zip(_gradients(workload, _gradient_arrays(workload, seed)), variables))
  optimizer = make_optimizer()

  def step():
    with tf.device(device):
      optimizer.apply_gradients(pairs)
  return step, lambda: None


def function_step(workload, make_optimizer, seed, device, jit_compile=None):
  with tf.device(device):
    variables = _eager_variables(workload, seed)
  arrays = _gradient_arrays(workload, seed)
  optimizer = make_optimizer()

  @tf.function(jit_compile=jit_compile)
  def apply():
    with tf.device(device):
      optimizer.apply_gradients(list(zip(_gradients(workload, arrays), variables)))

  def step():
    apply()
  return step, lambda: None


def _session_step(workload, make_optimizer, seed, device, use_resource):
  arrays = _gradient_arrays(workload, seed)
  graph = tf.Graph()
  with graph.as_default(), tf.device(device):
    variables = [tf.compat.v1.Variable(_initial_value(shape, seed + i), name=f"w{i}",
                                       use_resource=use_resource)
                 for i, shape in enumerate(workload.shapes)]
    grads = _gradients(workload, arrays)
    train_op = make_optimizer().apply_gradients(list(zip(grads, variables)))
    init = tf.compat.v1.global_variables_initializer()
  session = tf.compat.v1.Session(graph=graph)
  session.run(init)
  return lambda: session.run(train_op), session.close


def tf1_ref_step(workload, make_optimizer, seed, device):
  return _session_step(workload, make_optimizer, seed, device, use_resource=False)


def tf1_resource_step(workload, make_optimizer, seed, device):
  return _session_step(workload, make_optimizer, seed, device, use_resource=True)


def xla_step(workload, make_optimizer, seed, device):
  """tf.function(jit_compile=True): what Keras 3's fit compiles by default where it can."""
  return function_step(workload, make_optimizer, seed, device, jit_compile=True)


def xla_launch_step(workload, seed, device):
  """What XLA's launch alone costs a step like the optimizers': a jit-compiled function that writes
  each of the workload's variables and two slot-sized variables per variable (m and v) back
  unchanged. XLA folds the `+ 0` away and aliases every result to its variable, so the compiled
  step does no arithmetic: its time is the call of a function capturing 3N variables plus XLA's
  per-variable bookkeeping (snapshotting, buffer donation, the result tuple, the assignments),
  which every optimizer's XLA step pays on top of its update."""
  with tf.device(device):
    variables = [tf.Variable(_initial_value(shape, seed + i))
                 for i, shape in enumerate(workload.shapes) for _ in range(3)]

  @tf.function(jit_compile=True)
  def launch():
    with tf.device(device):
      for variable in variables:
        variable.assign_add(tf.zeros_like(variable))
  return launch, lambda: None


def _fit_step(workload, make_optimizer, seed, device, jit_compile):
  """One Keras 3 training step (model.train_on_batch) whose gradients are the workload's: the model
  is the sum over its weights w of reduce_sum(w * g), so d loss / d w = g. Forward and backward
  cost a pass over each weight, the same for every optimizer. Keras 3 optimizers only."""
  import keras
  arrays = _gradient_arrays(workload, seed)

  class Weights(keras.layers.Layer):
    """The workload's variables as a layer's weights."""

    def build(self, unused_shape):
      self.ws = [self.add_weight(shape=shape, initializer=keras.initializers.RandomNormal(seed=i))
                 for i, shape in enumerate(workload.shapes)]
      self.gs = [tf.constant(a) for a in arrays]

    def call(self, inputs):
      total = tf.add_n([tf.reduce_sum(w * g) for w, g in zip(self.ws, self.gs)])
      return tf.reshape(total, [1, 1]) + 0 * inputs

  with tf.device(device):
    model = keras.Sequential([keras.Input((1,)), Weights()])
    model.compile(optimizer=make_optimizer(), loss=lambda y_true, y_pred: tf.reduce_sum(y_pred),
                  jit_compile=jit_compile)
  x, y = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)

  def step():
    with tf.device(device):
      model.train_on_batch(x, y)
  return step, lambda: None


def fit_step(workload, make_optimizer, seed, device):
  return _fit_step(workload, make_optimizer, seed, device, jit_compile=False)


def fit_xla_step(workload, make_optimizer, seed, device):
  return _fit_step(workload, make_optimizer, seed, device, jit_compile=True)


BUILDERS = {"eager": eager_step, "tf.function": function_step, "tf1-ref": tf1_ref_step,
            "tf1-resource": tf1_resource_step, "xla": xla_step, "fit": fit_step,
            "fit-xla": fit_xla_step}
