"""`python -m tf_adam_op demo`: the same small model trained with stock Adam and with ours.

A two-layer MLP classifies synthetic data (no downloads), first in a TF1 session (ref variables),
then in a TF2 `tf.function` loop (resource variables). Each run starts from the same weights and
sees the same batches, so the two loss curves must be identical to the bit; the demo says whether
they are and how long a step took (the two trained side by side, a step of each in turn).
"""

import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import tf_adam_op

IMPLEMENTATIONS = {"stock": tf.compat.v1.train.AdamOptimizer, "tf_adam_op": tf_adam_op.AdamOptimizer}


def make_problem(seed, examples=8192, features=64, hidden=256, classes=10):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((examples, features)).astype(np.float32)
  teacher = rng.standard_normal((features, classes)).astype(np.float32)
  y = np.argmax(x @ teacher + 0.5 * rng.standard_normal((examples, classes)), axis=1)
  weights = [
      (rng.standard_normal((features, hidden)) / np.sqrt(features)).astype(np.float32),
      np.zeros(hidden, np.float32),
      (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32),
      np.zeros(classes, np.float32),
  ]
  return x, y.astype(np.int32), weights


def _loss(params, x, y):
  w1, b1, w2, b2 = params
  logits = tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def _batches(x, y, steps, batch_size):
  for step in range(steps):
    start = (step * batch_size) % (len(x) - batch_size)
    yield x[start:start + batch_size], y[start:start + batch_size]


def _median_step_time(seconds):
  """Median over the steps after the first (which traces, creates slots and warms up)."""
  return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def session_stepper(optimizer_cls, problem, batch_size):
  """A TF1 training step (ref variables, a graph and session of its own): (step(x, y) -> loss,
  close)."""
  x_data, _, weights = problem
  graph = tf.Graph()
  with graph.as_default():
    params = [tf.compat.v1.Variable(w, use_resource=False) for w in weights]
    x = tf.compat.v1.placeholder(tf.float32, [batch_size, x_data.shape[1]])
    y = tf.compat.v1.placeholder(tf.int32, [batch_size])
    loss = _loss(params, x, y)
    train_op = optimizer_cls(learning_rate=1e-3).minimize(loss, var_list=params)
    initialize = tf.compat.v1.global_variables_initializer()
  session = tf.compat.v1.Session(graph=graph)
  session.run(initialize)
  return (lambda xb, yb: session.run([loss, train_op], {x: xb, y: yb})[0]), session.close


def function_stepper(optimizer_cls, problem, batch_size):
  """A TF2 training step (resource variables, a tf.function): (step(x, y) -> loss, close)."""
  del batch_size  # (the function takes any)
  params = [tf.Variable(w) for w in problem[2]]
  opt = optimizer_cls(learning_rate=1e-3)

  @tf.function
  def train_step(x, y):
    with tf.GradientTape() as tape:
      loss = _loss(params, x, y)
    opt.apply_gradients(zip(tape.gradient(loss, params), params))
    return loss
  return (lambda xb, yb: train_step(tf.constant(xb), tf.constant(yb)).numpy()), (lambda: None)


MODES = {"TF1 session": session_stepper, "tf.function": function_stepper}


def train_side_by_side(make_stepper, problem, steps, batch_size, progress):
  """Each implementation trained on the same batches, one step of each in turn (the first of
  the two alternating), so that both are timed under the same conditions: timed one after the
  other, the tf.function ratio ranged from 0.87 to 1.24 between runs on a 2-core VM (2026-12-07),
  side by side 1.13-1.16. Returns {name: (losses, median seconds per step)}."""
  steppers = {name: make_stepper(cls, problem, batch_size) for name, cls in IMPLEMENTATIONS.items()}
  losses = {name: [] for name in steppers}
  seconds = {name: [] for name in steppers}
  try:
    for i, (xb, yb) in enumerate(progress(_batches(*problem[:2], steps, batch_size))):
      for name in (list(steppers) if i % 2 == 0 else list(reversed(steppers))):
        start = time.perf_counter()
        losses[name].append(steppers[name][0](xb, yb))
        seconds[name].append(time.perf_counter() - start)
  finally:
    for _, close in steppers.values():
      close()
  return {name: (np.array(losses[name]), _median_step_time(seconds[name])) for name in steppers}


def run(steps=300, batch_size=256, seed=0, quiet=False):
  """Trains every (mode, implementation); returns True when each mode's curves are identical."""
  problem = make_problem(seed)
  all_identical = True
  print(f"Training a 64-256-10 MLP for {steps} steps (batch {batch_size}) with stock Adam and "
        f"tf_adam_op; TensorFlow {tf.__version__}.")
  for mode, make_stepper in MODES.items():
    progress = lambda it, mode=mode: tqdm(it, total=steps, desc=f"{mode:12}", disable=quiet,
                                          leave=False)
    results = train_side_by_side(make_stepper, problem, steps, batch_size, progress)
    (stock_losses, stock_time), (ours_losses, ours_time) = results["stock"], results["tf_adam_op"]
    identical = np.array_equal(stock_losses.view(np.uint32), ours_losses.view(np.uint32))
    all_identical &= identical
    print(f"{mode}: loss {stock_losses[0]:.4f} -> {stock_losses[-1]:.4f}; loss curves "
          f"{'IDENTICAL (bit for bit)' if identical else 'DIFFERENT'}; median time per step: stock "
          f"{stock_time * 1e3:.2f} ms, tf_adam_op {ours_time * 1e3:.2f} ms "
          f"(x{stock_time / ours_time:.2f})")
  return all_identical


def run_cluster(steps=200, quiet=False):
  """`demo --cluster`: asynchronous parameter-server training on a local two-worker cluster.

  One ps and two workers, all tf.distribute.Servers on 127.0.0.1 in this process; the variables and
  tf_adam_op's ops live on the ps, each worker applies its own gradients (use_locking=True). Returns
  True when both workers' losses fell tenfold and the weights are finite.
  """
  from tf_adam_op import ps_cluster
  spec, servers = ps_cluster.local_cluster(num_workers=2)
  print(f"Local cluster: ps {spec.job_tasks('ps')[0]}, workers {', '.join(spec.job_tasks('worker'))}; "
        f"asynchronous training for {steps} global steps with tf_adam_op.AdamOptimizer "
        f"(use_locking=True), variables and Adam ops on the ps.")
  progress = tqdm(total=steps, desc="global step", disable=quiet, leave=False)

  def on_step(task_index, global_step, loss):
    progress.update(max(0, global_step - progress.n))
    progress.set_postfix_str(f"worker {task_index} loss {loss:.4f}")

  losses, (w, b) = ps_cluster.train(
      spec, servers, lambda: tf_adam_op.AdamOptimizer(0.05, use_locking=True), steps,
      on_step=on_step)
  progress.close()
  finite = bool(np.all(np.isfinite(w)) and np.all(np.isfinite(b)))
  ok = finite
  for task_index, worker_losses in sorted(losses.items()):
    fell = bool(worker_losses) and worker_losses[-1] < 0.1 * worker_losses[0]
    ok &= fell
    if worker_losses:
      print(f"worker {task_index}: {len(worker_losses)} steps, loss {worker_losses[0]:.4f} -> "
            f"{worker_losses[-1]:.4f}")
    else:
      print(f"worker {task_index}: took no step")
  print(f"weights finite: {finite}; "
        f"{'trained' if ok else 'DID NOT TRAIN as expected'}")
  return bool(ok)
