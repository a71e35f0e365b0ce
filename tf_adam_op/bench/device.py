"""Where the benchmark runs, and what that changes: the CPU (the default) or the first GPU.

The CPU times each step on its own (eager and session steps on the CPU return when done) and
compares with a 4-read/3-write stream over the same bytes. A GPU step returns once its work is
queued, so on the GPU the steps of a round are queued back to back and the device is synchronised
once at the end (per-step time: the round's time over its steps, a throughput, as in training);
its bandwidth reference is a device-to-device copy of the same bytes.
"""

import dataclasses
import time

import tensorflow as tf

from tf_adam_op.bench import measure


class NoGpuError(RuntimeError):
  pass


@dataclasses.dataclass(frozen=True)
class Device:
  name: str  # "cpu" or "gpu"
  tf_device: str  # the scope variables, gradients and steps are built in
  memory_device: str  # for TF's allocator statistics
  torch_device: str  # where torch's fused Adam runs, for the same comparison
  description: str  # for the report: the CPU model or the GPU's name

  @property
  def is_gpu(self):
    return self.name == "gpu"

  def sync(self):
    """Waits until the device has done what was queued (TF's and torch's work alike)."""
    if self.is_gpu:
      tf.test.experimental.sync_devices()
      from tf_adam_op.bench import torch_step
      torch_step.synchronize_cuda()

  def time_steps(self, step, count):
    """Seconds per step for `count` steps (see the module docstring for CPU against GPU)."""
    if not self.is_gpu:
      return measure.time_steps(step, count)
    self.sync()
    start = time.perf_counter()
    measure.time_steps(step, count)
    self.sync()
    return [(time.perf_counter() - start) / count] * count

  def probe_bandwidth(self, num_parameters, repeats):
    """Bytes per second of the reference a step's traffic is compared with (best pass)."""
    if not self.is_gpu:
      return measure.probe_bandwidth(num_parameters, repeats)
    return measure.probe_copy_bandwidth(self.tf_device, num_parameters, repeats, self.sync)


def cpu_model():
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      return next(line.split(":", 1)[1].strip() for line in cpuinfo
                  if line.startswith("model name"))
  except (OSError, StopIteration):
    import platform
    return platform.processor() or platform.machine()


def device(name):
  """The Device for "cpu" or "gpu"; NoGpuError when a GPU is asked for and TF sees none."""
  if name == "cpu":
    return Device("cpu", "/CPU:0", "CPU:0", "cpu", cpu_model())
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    raise NoGpuError("--device gpu: TensorFlow sees no GPU here (tf-adam-op info says why: "
                     "a CUDA build of TF, a driver and a visible device are needed)")
  details = tf.config.experimental.get_device_details(gpus[0])
  return Device("gpu", "/GPU:0", "GPU:0", "cuda", details.get("device_name", gpus[0].name))
