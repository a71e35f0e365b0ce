"""TF1 parameter-server training on an in-process cluster on 127.0.0.1 (one ps, two workers;
tf_adam_op/ps_cluster.py): variables and our ops on the ps, asynchronous workers with use_locking, and
SyncReplicasOptimizer wrapping ours against the same synchronous run with stock Adam."""

import numpy as np
import pytest

from helpers import OPTIMIZERS, assert_bitwise_equal
import tf_adam_op
from tf_adam_op import ps_cluster

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
def test_asynchronous_workers_with_locking_train(use_resource):
  spec, servers = ps_cluster.local_cluster(num_workers=2)
  losses, (w, b) = ps_cluster.train(
      spec, servers, lambda: tf_adam_op.AdamOptimizer(0.05, use_locking=True), steps=60,
      use_resource=use_resource)
  assert all(losses[i] for i in (0, 1)), "both workers took steps"
  for worker_losses in losses.values():
    assert worker_losses[-1] < 0.1 * worker_losses[0]
  assert np.all(np.isfinite(w)) and np.all(np.isfinite(b))


def test_our_ops_run_on_the_ps():
  spec, _ = ps_cluster.local_cluster(num_workers=2)
  graph, _, train_op, _, _, _ = ps_cluster._build_worker_graph(
      spec, 1, lambda: tf_adam_op.AdamOptimizer(0.05), sync_replicas=False, use_resource=True)
  ours = [op for op in graph.get_operations() if "AdamV1" in op.type]
  assert ours and all(op.device.startswith("/job:ps/task:0") for op in ours), [
      (op.type, op.device) for op in ours]


# After the last step the chief's SyncReplicas queue runner is cancelled mid-wait; its thread
# ends with CancelledError, which TF's QueueRunner re-raises in that thread (expected, harmless).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_sync_replicas_wrapping_ours_matches_stock():
  weights = {}
  for name, cls in OPTIMIZERS.items():
    spec, servers = ps_cluster.local_cluster(num_workers=2)
    _, weights[name] = ps_cluster.train(spec, servers, lambda cls=cls: cls(0.05), steps=15,
                                        sync_replicas=True)
  assert_bitwise_equal(weights["ours"], weights["stock"], names=("w", "b"))


def test_demo_cluster_command(tmp_path):
  import os
  import subprocess
  import sys
  result = subprocess.run([sys.executable, "-m", "tf_adam_op", "demo", "--cluster", "--steps", "100",
                           "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "worker 0:" in result.stdout and "worker 1:" in result.stdout
  assert "trained" in result.stdout and "127.0.0.1" in result.stdout
