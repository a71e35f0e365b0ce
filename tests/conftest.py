import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_HINT = f"install the package and its test extras first, from {ROOT}: pip install '.[test]'"

try:
  import tensorflow as tf  # noqa: E402
except ImportError as missing:
  pytest.exit(f"cannot import tensorflow ({missing}); {INSTALL_HINT}", returncode=4)


def _import_the_package_under_test():
  """`python -m pytest` puts the checkout first on sys.path. Unless the checkout holds a build of
  its own, the installed package is the one to test, so the checkout is taken off the path; if no
  build can be imported at all, one line says so instead of a screen of INTERNALERROR."""
  if not os.path.isfile(os.path.join(ROOT, "tf_adam_op", "_build_info.py")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
  try:
    import tf_adam_op  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    first_line = str(error).splitlines()[0]
    pytest.exit(f"cannot import tf_adam_op ({first_line}); {INSTALL_HINT}", returncode=4)


_import_the_package_under_test()

# Two logical CPU devices, so tests can place variables on different devices (the optimizer's
# grouping by device, tf.distribute). Must happen before TensorFlow initializes its devices.
LOGICAL_CPUS = 2
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS)


def pytest_report_header(config):
  import tf_adam_op  # the installed package: its op library must load, or every test fails loudly
  from tf_adam_op import _core
  return [f"tensorflow {tf.__version__}; tf_adam_op from {os.path.dirname(tf_adam_op.__file__)}",
          f"tf_adam_op build: {_core.build_info()}"]


@pytest.fixture
def rng():
  return np.random.default_rng(1234)
