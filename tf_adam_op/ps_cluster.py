"""TF1 parameter-server training on a local cluster: TensorFlow's own distributed runtime
(tf.distribute.Server, replica_device_setter, MonitoredTrainingSession), nothing home-made.

Used by `tf-adam-op demo --cluster` and by the tests. Every server listens on 127.0.0.1 only. The
variables, their slots and the Adam ops live on the ps task; workers compute gradients on their own
data and send them there, asynchronously (each applies its own, use_locking=True) or through
SyncReplicasOptimizer (the gradients of all workers averaged into one update per step).
"""

import socket
import threading

import numpy as np
import tensorflow as tf

FEATURES = 8


def free_ports(count):
  """Ports the kernel has just handed out on 127.0.0.1 (free unless something grabs them now)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket()
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def local_cluster(num_workers=2):
  """A ClusterSpec of one ps and `num_workers` workers on 127.0.0.1, and its started servers."""
  ports = free_ports(1 + num_workers)
  spec = tf.train.ClusterSpec({
      "ps": [f"127.0.0.1:{ports[0]}"],
      "worker": [f"127.0.0.1:{port}" for port in ports[1:]],
  })
  servers = {("ps", 0): tf.distribute.Server(spec, "ps", 0, start=True)}
  for i in range(num_workers):
    servers[("worker", i)] = tf.distribute.Server(spec, "worker", i, start=True)
  return spec, servers


def worker_data(seed, batch=32):
  """A fixed regression batch (a shared linear target plus noise)."""
  rng = np.random.default_rng(100 + seed)
  x = rng.standard_normal((batch, FEATURES)).astype(np.float32)
  target = np.linspace(-1.0, 1.0, FEATURES, dtype=np.float32).reshape(FEATURES, 1)
  y = x @ target + 0.01 * rng.standard_normal((batch, 1)).astype(np.float32)
  return x, y


def _build_worker_graph(spec, task_index, make_optimizer, sync_replicas, use_resource):
  graph = tf.Graph()
  with graph.as_default():
    device_setter = tf.compat.v1.train.replica_device_setter(
        cluster=spec, worker_device=f"/job:worker/task:{task_index}")
    with tf.compat.v1.device(device_setter):
      global_step = tf.compat.v1.train.get_or_create_global_step()
      w = tf.compat.v1.get_variable("w", initializer=np.zeros((FEATURES, 1), np.float32),
                                    use_resource=use_resource)
      b = tf.compat.v1.get_variable("b", initializer=np.zeros(1, np.float32),
                                    use_resource=use_resource)
      # Synchronous workers share one batch: every aggregated update is then the mean of equal
      # gradients, whichever worker is faster, so a run is reproducible (and comparable).
      x_data, y_data = worker_data(0 if sync_replicas else task_index)
      loss = tf.reduce_mean(tf.square(tf.matmul(tf.constant(x_data), w) + b - y_data))
      optimizer = make_optimizer()
      if sync_replicas:
        num_workers = spec.num_tasks("worker")
        optimizer = tf.compat.v1.train.SyncReplicasOptimizer(
            optimizer, replicas_to_aggregate=num_workers, total_num_replicas=num_workers)
      train_op = optimizer.minimize(loss, global_step=global_step)
  return graph, optimizer, train_op, loss, global_step, (w, b)


def train(spec, servers, make_optimizer, steps, sync_replicas=False, use_resource=True,
          on_step=None, timeout_s=120):
  """Trains on every worker at once (one thread each) until the global step reaches `steps`.

  Returns (losses per worker, final [w, b]). `on_step(task_index, global_step, loss)` is called
  after each step of each worker (e.g. to show progress).
  """
  num_workers = spec.num_tasks("worker")
  losses = {i: [] for i in range(num_workers)}
  errors = []
  # The chief initializes the variables; the others open their sessions once it has (a worker that
  # finds them uninitialized polls again only after 30 s), and all start stepping together.
  chief_ready = threading.Event()
  all_ready = threading.Barrier(num_workers, timeout=timeout_s)

  def run_worker(task_index):
    try:
      graph, optimizer, train_op, loss, global_step, _ = _build_worker_graph(
          spec, task_index, make_optimizer, sync_replicas, use_resource)
      with graph.as_default():
        is_chief = task_index == 0
        hooks = [optimizer.make_session_run_hook(is_chief)] if sync_replicas else []
        config = tf.compat.v1.ConfigProto(device_filters=["/job:ps", f"/job:worker/task:{task_index}"])
        if not is_chief:
          chief_ready.wait(timeout_s)
        with tf.compat.v1.train.MonitoredTrainingSession(
            master=servers[("worker", task_index)].target, is_chief=is_chief, hooks=hooks,
            config=config, save_checkpoint_secs=None, save_summaries_steps=None,
            log_step_count_steps=None,
            # The chief's SyncReplicas queue runner waits for gradients that will not come after
            # the last step; closing gives it a second, then leaves the (daemon) thread behind.
            stop_grace_period_secs=1) as session:
          if is_chief:
            chief_ready.set()
          all_ready.wait()
          # The step is read before each update, not fetched with it: with SyncReplicasOptimizer
          # a worker that started a step past the last would wait forever for its token.
          while not session.should_stop():
            step = int(session.run(global_step))
            if step >= steps:
              break
            _, value = session.run([train_op, loss])
            losses[task_index].append(float(value))
            if on_step is not None:
              on_step(task_index, step + 1, float(value))
    except Exception as e:
      errors.append((task_index, e))
      chief_ready.set()
      all_ready.abort()

  threads = [threading.Thread(target=run_worker, args=(i,), daemon=True)
             for i in range(num_workers)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout_s)
  if any(thread.is_alive() for thread in threads):
    raise TimeoutError(f"parameter-server training did not finish in {timeout_s} s")
  if errors:
    raise errors[0][1]
  return losses, read_weights(servers, use_resource)


def read_weights(servers, use_resource=True):
  """The trained [w, b], read from the ps (variables there outlive the workers' sessions)."""
  with tf.Graph().as_default(), tf.device("/job:ps/task:0"):
    weights = [tf.compat.v1.get_variable("w", shape=(FEATURES, 1), use_resource=use_resource),
               tf.compat.v1.get_variable("b", shape=(1,), use_resource=use_resource)]
    with tf.compat.v1.Session(servers[("ps", 0)].target) as session:
      return session.run(weights)
