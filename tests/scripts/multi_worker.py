"""One worker of test_multi_worker.py's MultiWorkerMirroredStrategy run (TF_CONFIG from the
environment): trains the same small model with ours and with stock Adam and writes both results."""

import json
import sys

import numpy as np
import tensorflow as tf


def train(strategy, cls, steps=6):
  with strategy.scope():
    w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    b = tf.Variable(np.zeros(3, np.float32))
    opt = cls(0.05)
  task = strategy.cluster_resolver.task_id

  def replica_step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(tf.matmul(x, w) + b))
    opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))

  @tf.function
  def step(x):
    strategy.run(replica_step, args=(x,))

  for i in range(steps):  # each worker its own batch: the all-reduce makes them agree
    step(tf.constant(np.full((2, 4), 0.1 * (i + 1) * (task + 1), np.float32)))
  return [w.numpy().tolist(), b.numpy().tolist(),
          [p.numpy().tolist() for p in opt._get_beta_accumulators()]]


def main(out_path):
  import tf_adam_op
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  results = {"ours": train(strategy, tf_adam_op.AdamOptimizer),
             "stock": train(strategy, tf.compat.v1.train.AdamOptimizer)}
  with open(out_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv[1])
