"""Timing, peak memory and the memory-bandwidth probe."""

import ctypes
import gc
import os
import time

import numpy as np

BYTES_PER_PARAMETER = 28  # float32 Adam: read var, m, v, grad; write var, m, v


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


def probe_bandwidth(num_parameters, repeats=5):
  """Bytes per second the machine moves with an Adam step's traffic (median of `repeats` passes of
  a vectorised 4-read/3-write stream over num_parameters float32, on every core)."""
  from tf_adam_op import _core  # pylint: disable=g-import-not-at-top
  seconds = _core.bandwidth_probe(num_parameters, os.cpu_count() or 1, repeats)
  return BYTES_PER_PARAMETER * num_parameters / float(np.median(seconds))


def fix_malloc_thresholds():
  """Make glibc return every large block to the system on free, so one implementation's freed
  temporaries are not counted as resident for (or hidden from) the next one's peak."""
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return
  m_trim_threshold, m_mmap_threshold = -1, -3
  libc.mallopt(m_mmap_threshold, 128 * 1024)  # setting it disables glibc's dynamic threshold
  libc.mallopt(m_trim_threshold, 128 * 1024)


class PeakMemory:
  """Peak resident memory above the starting point while the block runs, in bytes (Linux: the
  kernel's high-water mark, reset on entry through /proc/self/clear_refs). None elsewhere."""

  def __init__(self):
    self.extra_bytes = None

  @staticmethod
  def _status_kib(field):
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith(field + ":"):
          return int(line.split()[1])
    raise KeyError(field)

  def __enter__(self):
    try:
      with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
      self._start_kib = self._status_kib("VmRSS")
    except OSError:
      self._start_kib = None
    return self

  def __exit__(self, *exc):
    if self._start_kib is not None:
      self.extra_bytes = max(0, self._status_kib("VmHWM") - self._start_kib) * 1024
    return False
