"""docs/errors.md (sizes): a tensor of more than 2^31 elements is updated correctly everywhere
(64-bit indexing).

float16 keeps it to 4 GiB a tensor, 16.5 GiB at peak for var, m, v and grad. It runs in a subprocess
so the memory is returned at once, with oneDNN's CPU allocator off: that allocator refuses a single
4 GiB block (ResourceExhausted) before our op is ever reached.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from numpy_reference import adam_step

pytestmark = pytest.mark.large

REQUIRED_GIB = 18
SCRIPT = """
import numpy as np, tensorflow as tf
from tf_adam_op import ops
n = 2**31 + 5
var, m, v = (tf.Variable(tf.fill([n], tf.constant(x, tf.float16))) for x in (1.0, 0.0, 0.0))
grad = tf.fill([n], tf.constant(0.5, tf.float16))
ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, 0.9, 0.999, 0.01, 0.9, 0.999, 1e-8, grad)
del grad
for i in (0, 2**30, 2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, n - 1):  # first, middle, both sides of 2^31, last
  print(i, var[i].numpy().view(np.uint16), m[i].numpy().view(np.uint16), v[i].numpy().view(np.uint16))
"""


def _available_gib():
  with open("/proc/meminfo") as meminfo:
    for line in meminfo:
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) / 2**20
  return 0.0


def test_5_more_than_2_pow_31_elements(tmp_path):
  if _available_gib() < REQUIRED_GIB:
    pytest.skip(f"needs {REQUIRED_GIB} GiB of free memory, {_available_gib():.1f} GiB available")
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  one = lambda x: np.array([x], np.float16)
  expected = [x.view(np.uint16)[0] for x in adam_step(one(1.0), one(0.0), one(0.0), one(0.5),
                                                      0.9, 0.999, 0.01, 0.9, 0.999, 1e-8)]
  lines = result.stdout.split("\n")
  rows = [line.split() for line in lines if line.strip()]
  assert len(rows) == 7
  for index, *bits in rows:
    assert [int(b) for b in bits] == expected, f"element {index}"
