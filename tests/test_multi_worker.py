"""MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1 (TF_CONFIG), started and
stopped by the test: both train, the workers agree, and ours equals stock under the strategy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_adam_op import ps_cluster

pytestmark = pytest.mark.cluster

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "multi_worker.py")
TIMEOUT_S = 240


def test_two_workers_agree_and_match_stock(tmp_path):
  ports = ps_cluster.free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
  workers = []
  try:
    for index in range(2):
      env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
             "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
      workers.append(subprocess.Popen(
          [sys.executable, SCRIPT, str(tmp_path / f"worker{index}.json")], cwd=tmp_path, env=env,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=TIMEOUT_S) for worker in workers]
  finally:
    for worker in workers:  # never leave a worker behind, whatever happened
      if worker.poll() is None:
        worker.kill()
        worker.wait()
  for worker, (_, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stderr[-3000:]
  results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
  for name in ("ours", "stock"):
    w0, w1 = (np.array(r[name][0], np.float32) for r in results)
    np.testing.assert_array_equal(w0, w1)  # the workers agree
  for part in range(3):
    np.testing.assert_array_equal(np.array(results[0]["ours"][part], np.float32),
                                  np.array(results[0]["stock"][part], np.float32))
  assert not np.array_equal(np.array(results[0]["ours"][0]),
                            np.linspace(-1, 1, 12).reshape(4, 3))  # it trained
