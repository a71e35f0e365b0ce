import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

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
