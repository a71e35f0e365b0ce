"""Timing, peak memory and the memory-bandwidth probe."""

import gc
import os
import time

import tensorflow as tf

BYTES_PER_PARAMETER = 28  # float32 Adam: read var, m, v, grad; write var, m, v
AMSGRAD_BYTES_PER_PARAMETER = 36  # and vhat read and written
# 8-bit states: var read and written, grad read, one byte of m and of v each read and written.
BYTES_PER_PARAMETER_8BIT = 16


def time_steps(step, count):
  """Seconds of each of `count` steps. The garbage collector is paused, as timeit does: a
  collection walks every live Python object, those of the other implementations included, and
  would charge that to whichever step it happens in."""
  seconds = []
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for _ in range(count):
      start = time.perf_counter()
      step()
      seconds.append(time.perf_counter() - start)
  finally:
    if gc_was_enabled:
      gc.enable()
  return seconds


def probe_bandwidth(num_parameters, repeats=10):
  """Bytes per second the machine moves with an Adam step's traffic: the best of `repeats` passes
  (STREAM's convention) of a vectorised 4-read/3-write stream over num_parameters float32, on
  every core. The best pass, not the median: the fraction of bandwidth is then conservative."""
  from tf_adam_op import _core
  seconds = _core.bandwidth_probe(num_parameters, os.cpu_count() or 1, repeats)
  return BYTES_PER_PARAMETER * num_parameters / min(seconds)


COPIES_PER_PASS = 10


def probe_copy_bandwidth(tf_device, num_parameters, repeats, sync):
  """Bytes per second of a device-to-device copy that moves an Adam step's traffic: a buffer of 14
  bytes per parameter (a copy reads and writes each byte: 28 in all) copied COPIES_PER_PASS times
  in a row in one tf.function call, `sync` waiting for the device; the best of `repeats` passes."""
  floats = BYTES_PER_PARAMETER * num_parameters // 2 // 4

  @tf.function
  def copies(x):
    for _ in range(COPIES_PER_PASS):
      x = tf.raw_ops.DeepCopy(x=x)  # a fresh buffer each time: a real read and write
    return x

  with tf.device(tf_device):
    source = tf.zeros([floats], tf.float32)
    copies(source)  # traces and allocates
    sync()
    best = float("inf")
    for _ in range(repeats):
      start = time.perf_counter()
      copies(source)
      sync()
      best = min(best, time.perf_counter() - start)
  return COPIES_PER_PASS * 2 * 4 * floats / best


class StepMemory:
  """Peak bytes TensorFlow's allocator on `device` ("CPU:0", "GPU:0") had in use while the block
  ran, above what it had in use when the block started: the temporaries of the steps (variables
  and slots exist before). Read from TF's own allocator statistics, which count tensors, not pages
  a pool keeps resident.

  TF keeps no statistics for a CPU allocator without oneDNN (off by default on CPUs without
  AVX-512; TF_ENABLE_ONEDNN_OPTS=1 turns it on): extra_bytes then stays None, shown as not measured.
  """

  def __init__(self, device="CPU:0"):
    self.device = device
    self.extra_bytes = None
    self._start = None

  def __enter__(self):
    try:
      tf.config.experimental.reset_memory_stats(self.device)
      self._start = tf.config.experimental.get_memory_info(self.device)["current"]
    except ValueError:  # "Cannot reset memory stats" / "Allocator stats not available"
      self._start = None
    return self

  def __exit__(self, *exc):
    if self._start is not None:
      self.extra_bytes = tf.config.experimental.get_memory_info(self.device)["peak"] - self._start
    return False
