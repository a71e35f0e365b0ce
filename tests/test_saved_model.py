"""SavedModel: a tf.Module holding the optimizer and a train-step tf.function saves, loads in a fresh
process after `import tf_adam_op`, and trains on exactly as an uninterrupted run. Stock v1 Adam
cannot be loaded (its revived optimizer has no add_slot); loading ours without the package fails
on the unregistered op."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "saved_model_roundtrip.py")


def _run(tmp_path, *args):
  return subprocess.run([sys.executable, SCRIPT, *args], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _weights(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return [np.array(w, np.float32) for w in json.loads(result.stdout.strip().splitlines()[-1])]


def test_saved_model_loads_in_a_fresh_process_and_trains_on_exactly(tmp_path):
  _weights(_run(tmp_path, "save", str(tmp_path / "ours3"), "ours", "3"))
  resumed = _weights(_run(tmp_path, "load", str(tmp_path / "ours3"), "4", "import"))
  # Uninterrupted: 7 steps in one process (saved too, so both runs trace the same functions).
  straight = _weights(_run(tmp_path, "save", str(tmp_path / "ours7"), "ours", "7"))
  for a, b in zip(resumed, straight):
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_stock_v1_adam_cannot_be_loaded_but_ours_can(tmp_path):
  _weights(_run(tmp_path, "save", str(tmp_path / "stock"), "stock", "2"))
  result = _run(tmp_path, "load", str(tmp_path / "stock"), "1", "no-import")
  assert result.returncode != 0 and "add_slot" in result.stderr


def test_loading_without_importing_the_package_names_the_missing_op(tmp_path):
  _weights(_run(tmp_path, "save", str(tmp_path / "ours"), "ours", "1"))
  result = _run(tmp_path, "load", str(tmp_path / "ours"), "1", "no-import")
  assert result.returncode != 0
  assert "Op type not registered 'ResourceApplyAdamV1Multi'" in result.stderr
