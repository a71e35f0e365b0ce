"""`tf-adam-op bench`: step times of stock v1 Adam and tf_adam_op, measured in one run.

Workload `sparse` (the embedding case): a 1,000,000 x 64 float32 table, a batch of 4096 indices
with duplicates, one `apply_gradients` of an IndexedSlices gradient per step inside `tf.function`,
for stock AdamOptimizer, ours (stock's rule, fused) and ours with lazy=True. Ratios are against
stock, from the same run on the same machine; nothing is compared to a stored figure.
"""

import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import tf_adam_op

SPARSE_ROWS, SPARSE_WIDTH, SPARSE_BATCH = 1_000_000, 64, 4096


def _sparse_gradients(rng, steps):
  """Batches of 4096 indices drawn from 3000 rows each, so every batch has duplicates."""
  batches = []
  for _ in range(steps):
    pool = rng.integers(0, SPARSE_ROWS, size=3000)
    indices = rng.choice(pool, size=SPARSE_BATCH).astype(np.int64)
    values = rng.standard_normal((SPARSE_BATCH, SPARSE_WIDTH)).astype(np.float32)
    batches.append((tf.constant(values), tf.constant(indices)))
  return batches


def time_sparse_step(optimizer, batches, progress):
  var = tf.Variable(tf.random.stateless_normal([SPARSE_ROWS, SPARSE_WIDTH], seed=[1, 2]))
  dense_shape = tf.constant([SPARSE_ROWS, SPARSE_WIDTH], tf.int64)

  @tf.function
  def step(values, indices):
    optimizer.apply_gradients([(tf.IndexedSlices(values, indices, dense_shape), var)])

  step(*batches[0])  # trace and create the slots outside the timing
  seconds = []
  for values, indices in progress(batches[1:]):
    start = time.perf_counter()
    step(values, indices)
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds))


SPARSE_IMPLEMENTATIONS = {
    "stock v1 Adam": lambda: tf.compat.v1.train.AdamOptimizer(1e-3),
    "tf_adam_op": lambda: tf_adam_op.AdamOptimizer(1e-3),
    "tf_adam_op lazy": lambda: tf_adam_op.AdamOptimizer(1e-3, lazy=True),
}


def run_sparse(steps=10, seed=0, quiet=False):
  """Returns {implementation: median seconds per step} and prints the table."""
  batches = _sparse_gradients(np.random.default_rng(seed), steps + 1)
  print(f"sparse: embedding {SPARSE_ROWS:,} x {SPARSE_WIDTH} float32, batch {SPARSE_BATCH} indices "
        f"with duplicates, tf.function, CPU ({len(tf.config.list_logical_devices('CPU'))} device, "
        f"TensorFlow {tf.__version__}); median of {steps} steps")
  results = {}
  for name, make in SPARSE_IMPLEMENTATIONS.items():
    progress = lambda it, name=name: tqdm(it, desc=f"{name:16}", disable=quiet, leave=False)
    results[name] = time_sparse_step(make(), batches, progress)
  stock = results["stock v1 Adam"]
  print(f"{'implementation':18} {'ms/step':>10} {'speed-up vs stock':>18}")
  for name, seconds in results.items():
    print(f"{name:18} {seconds * 1e3:10.3f} {stock / seconds:17.1f}x")
  return results
