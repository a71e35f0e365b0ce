"""Child process for test_saved_model.py: `save DIR OPT STEPS` (OPT: ours, adamw (AdamW with
AMSGrad), stock, keras (tf_adam_op.keras.Adam, on Keras variables) or keras8 (the same with 8-bit
states for every variable)) trains and saves a tf.Module holding
the optimizer and its train step; `load DIR STEPS IMPORT [RESAVE_DIR]` loads it in this fresh process
(importing tf_adam_op first or not), trains on, and saves it again to RESAVE_DIR if given;
`ordered DIR` loads it and runs the loaded step inside a new tf.function that reads the weights
after it, checking the read sees the update. Prints the weights as JSON on the last line."""

import json
import sys

import numpy as np
import tensorflow as tf

DATA = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)


class Model(tf.Module):

  def __init__(self, optimizer, variable=tf.Variable):
    super().__init__()
    self.w = variable(np.full((3, 2), 0.5, np.float32))
    self.b = variable(np.zeros(2, np.float32))
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
    import tf_adam_op
    if which.startswith("keras"):
      import keras
      import tf_adam_op.keras
      bits = {"keras": 32, "keras8": 8}[which]
      model = Model(tf_adam_op.keras.Adam(0.05, state_bits=bits, min_8bit_size=0), keras.Variable)
    else:
      optimizer = {"ours": lambda: tf_adam_op.AdamOptimizer(0.05),
                   "adamw": lambda: tf_adam_op.AdamWOptimizer(0.01, 0.05, amsgrad=True),
                   "stock": lambda: tf.compat.v1.train.AdamOptimizer(0.05)}[which]()
      model = Model(optimizer)
    train(model, steps)
    tf.saved_model.save(model, export_dir)
  else:
    export_dir, steps, do_import = argv[2], int(argv[3]), argv[4] == "import"
    if do_import:
      import tf_adam_op  # noqa: F401
    model = tf.saved_model.load(export_dir)
    if argv[1] == "ordered":
      check_loaded_step_is_ordered(model)
    else:
      train(model, steps)
      if len(argv) > 5:
        tf.saved_model.save(model, argv[5])
  print(json.dumps(weights(model)))


def check_loaded_step_is_ordered(model):
  """The loaded train step, called in a new tf.function before a read of w: the read sees the
  update (in the graph: a path from the call to the read), on every call."""
  @tf.function
  def step_then_read(x):
    model.train_step(x)
    return model.w.read_value()
  graph = step_then_read.get_concrete_function(tf.constant(DATA)).graph
  call = [op for op in graph.get_operations() if op.type == "StatefulPartitionedCall"]
  read = [op for op in graph.get_operations() if op.type == "ReadVariableOp"]
  assert len(call) == 1 and read, (call, read)
  reachable, frontier = set(), [call[0]]
  while frontier:
    op = frontier.pop()
    for nxt in [c for t in op.outputs for c in t.consumers()] + op._control_outputs:
      if nxt not in reachable:
        reachable.add(nxt)
        frontier.append(nxt)
  assert all(r in reachable for r in read), "the read of w is not ordered after the loaded step"
  for _ in range(10):
    seen = step_then_read(tf.constant(DATA)).numpy()
    assert np.array_equal(seen, model.w.numpy()), "the read saw w before the loaded step's update"


if __name__ == "__main__":
  main(sys.argv)
