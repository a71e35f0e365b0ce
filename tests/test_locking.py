"""docs/errors.md ("Locking"): concurrent updates with use_locking=True equal a serial order exactly; without
locks nothing crashes; opposite lock orders never deadlock."""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_bitwise_equal
from numpy_reference import adam_step
from tf_adam_op import ops

SCALARS = dict(beta1_power=0.9, beta2_power=0.999, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
THREADS, RUNS_PER_THREAD = 16, 4
SIZE = 200_003  # large enough that unlocked updates would overlap and lose writes


def _serial_result(var, m, v, grad, times):
  for _ in range(times):
    var, m, v = adam_step(var, m, v, grad, *SCALARS.values())
  return [var, m, v]


def _run_concurrently(session, fetch):
  failures = []

  def worker():
    try:
      for _ in range(RUNS_PER_THREAD):
        session.run(fetch)
    except Exception as e:
      failures.append(e)
  threads = [threading.Thread(target=worker) for _ in range(THREADS)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not failures, failures


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
def test_28_concurrent_locked_updates_equal_a_serial_order(rng, use_resource):
  init = [rng.standard_normal(SIZE).astype(np.float32), np.zeros(SIZE, np.float32),
          np.zeros(SIZE, np.float32)]
  grad = rng.standard_normal(SIZE).astype(np.float32)
  # Every thread applies the same update, so every serial order gives the same bits.
  expected = _serial_result(*init, grad, THREADS * RUNS_PER_THREAD + THREADS)
  config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=THREADS)
  with tf.Graph().as_default(), tf.compat.v1.Session(config=config) as session:
    var, m, v = (tf.compat.v1.Variable(x, use_resource=use_resource) for x in init)
    if use_resource:
      update = lambda: ops.resource_apply_adam_v1(var.handle, m.handle, v.handle,
                                                  *SCALARS.values(), grad, use_locking=True)
    else:
      update = lambda: ops.apply_adam_v1(var, m, v, *SCALARS.values(), grad, use_locking=True)
    one_update = update()
    parallel_updates = tf.group(*[update() for _ in range(THREADS)])  # run by the inter-op pool
    session.run(tf.compat.v1.global_variables_initializer())
    _run_concurrently(session, one_update)  # 16 Python threads, each session.run in parallel
    session.run(parallel_updates)
    assert_bitwise_equal(session.run([var, m, v]), expected)


def test_29_unlocked_ref_updates_do_not_crash(rng):
  grad = rng.standard_normal(SIZE).astype(np.float32)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var, m, v = (tf.compat.v1.Variable(np.zeros(SIZE, np.float32), use_resource=False)
                 for _ in "xyz")
    update = ops.apply_adam_v1(var, m, v, *SCALARS.values(), grad, use_locking=False)
    session.run(tf.compat.v1.global_variables_initializer())
    _run_concurrently(session, update)
    assert all(np.all(np.isfinite(x)) for x in session.run([var, m, v]))


OPPOSITE_ORDERS = textwrap.dedent("""
    import numpy as np, tensorflow as tf, threading
    from tf_adam_op import ops
    scalars = (0.9, 0.999, 0.01, 0.9, 0.999, 1e-8)
    grad = np.ones(50_000, np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
      a, b, c = (tf.compat.v1.Variable(np.zeros(50_000, np.float32), use_resource=RESOURCE)
                 for _ in "abc")
      def update(x, y, z):
        if RESOURCE:
          return ops.resource_apply_adam_v1(x.handle, y.handle, z.handle, *scalars, grad,
                                            use_locking=True)
        return ops.apply_adam_v1(x, y, z, *scalars, grad, use_locking=True)
      ab, ba = update(a, b, c), update(b, a, c)   # locks wanted in opposite orders
      session.run(tf.compat.v1.global_variables_initializer())
      def loop(op):
        for _ in range(200):
          session.run(op)
      threads = [threading.Thread(target=loop, args=(op,)) for op in (ab, ba, ab, ba)]
      [t.start() for t in threads]
      [t.join() for t in threads]
    print("no deadlock")
""")


@pytest.mark.parametrize("resource", [False, True], ids=["ref", "resource"])
def test_30_opposite_lock_orders_do_not_deadlock(resource, tmp_path):
  # In a subprocess: a deadlock must fail the test on its time limit, not hang the test run. It runs
  # in tmp_path so that the installed package is imported, not a source checkout in the cwd.
  script = OPPOSITE_ORDERS.replace("RESOURCE", str(resource))
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "no deadlock" in result.stdout
