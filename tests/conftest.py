import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_HINT = f"install the package and its test extras first, from {ROOT}: pip install '.[test]'"


def _cannot_test():
  """Why the suite cannot run here, or None. `python -m pytest` puts the checkout first on
  sys.path: unless the checkout holds a build of its own (an editable install's import hook finds
  its build either way), the installed package is the one to test, so the checkout is taken off
  the path."""
  try:
    import numpy  # noqa: F401
    import tensorflow  # noqa: F401
  except ImportError as missing:
    return f"cannot import {missing.name}; {INSTALL_HINT}"
  if not os.path.isfile(os.path.join(ROOT, "tf_adam_op", "_build_info.py")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
  try:
    import tf_adam_op  # noqa: F401
  except ImportError as error:
    return f"cannot import tf_adam_op ({str(error).splitlines()[0]}); {INSTALL_HINT}"
  return None


CANNOT_TEST = _cannot_test()


def pytest_sessionstart(session):
  """One line and exit status 4, instead of a traceback per test file (or INTERNALERROR)."""
  if CANNOT_TEST:
    pytest.exit(CANNOT_TEST, returncode=4)


if CANNOT_TEST:
  collect_ignore_glob = ["*.py"]
else:
  import numpy as np
  import tensorflow as tf

  # Two logical CPU devices, so tests can place variables on different devices (the optimizer's
  # grouping by device, tf.distribute). Must happen before TensorFlow initializes its devices.
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_report_header(config):
  if CANNOT_TEST:
    return []
  import tf_adam_op  # the installed package: its op library must load, or every test fails loudly
  from tf_adam_op import _core
  return [f"tensorflow {tf.__version__}; tf_adam_op from {os.path.dirname(tf_adam_op.__file__)}",
          f"tf_adam_op build: {_core.build_info()}"]


@pytest.fixture
def rng():
  return np.random.default_rng(1234)
