"""Child process for test_saved_model.py: `save DIR OPT STEPS` trains and saves a tf.Module holding
the optimizer and its train step; `load DIR STEPS IMPORT` loads it in this fresh process (importing
tf_adam_op first or not) and trains on. Prints the weights as JSON on the last line."""

import json
import sys

import numpy as np
import tensorflow as tf

DATA = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)


class Model(tf.Module):

  def __init__(self, optimizer):
    super().__init__()
    self.w = tf.Variable(np.full((3, 2), 0.5, np.float32))
    self.b = tf.Variable(np.zeros(2, np.float32))
    self.optimizer = optimizer

  @tf.function(input_signature=[tf.TensorSpec([8, 3], tf.float32)])
  def train_step(self, x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(tf.matmul(x, self.w) + self.b - 1.0))
    grads = tape.gradient(loss, [self.w, self.b])
    self.optimizer.apply_gradients(zip(grads, [self.w, self.b]))
    return loss


def train(model, steps):
  for _ in range(steps):
    model.train_step(tf.constant(DATA))


def weights(model):
  return [model.w.numpy().tolist(), model.b.numpy().tolist()]


def main(argv):
  if argv[1] == "save":
    export_dir, which, steps = argv[2], argv[3], int(argv[4])
    import tf_adam_op  # pylint: disable=g-import-not-at-top
    optimizer = (tf_adam_op.AdamOptimizer(0.05) if which == "ours"
                 else tf.compat.v1.train.AdamOptimizer(0.05))
    model = Model(optimizer)
    train(model, steps)
    tf.saved_model.save(model, export_dir)
  else:
    export_dir, steps, do_import = argv[2], int(argv[3]), argv[4] == "import"
    if do_import:
      import tf_adam_op  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    model = tf.saved_model.load(export_dir)
    train(model, steps)
  print(json.dumps(weights(model)))


if __name__ == "__main__":
  main(sys.argv)
