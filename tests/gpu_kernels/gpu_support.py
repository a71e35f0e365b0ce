"""Device memory, streams and the harness, for the kernel tests, the sanitizer cases and the bench.
The harness must be built (device_check.sh builds it; HARNESS_DIR says where, by default
build/gpu_kernels), and device memory comes from torch; tests that need a GPU skip without one, and
pytest's -ra summary says why."""

import importlib
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS_DIR = os.environ.get("HARNESS_DIR", os.path.join(ROOT, "build", "gpu_kernels"))

try:
  import torch
except ImportError:
  torch = None


def _harness():
  sys.path.insert(0, HARNESS_DIR)
  try:
    return importlib.import_module("adam_gpu_harness"), None
  except ImportError as error:
    return None, f"harness not built in {HARNESS_DIR} ({error}); device_check.sh builds it"


HARNESS, HARNESS_MISSING = _harness()
GPU = torch is not None and torch.cuda.is_available()
NO_GPU = "no GPU visible to torch" if torch is not None else "torch is not installed"

needs_gpu = pytest.mark.skipif(not GPU or HARNESS is None, reason=HARNESS_MISSING or NO_GPU)
needs_harness = pytest.mark.skipif(HARNESS is None, reason=HARNESS_MISSING or "")

TORCH_DTYPES = {} if torch is None else {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64}


def numpy_dtype(name):
  from reference import BFLOAT16
  return BFLOAT16 if name == "bfloat16" else np.dtype(name)


def to_device(array):
  """A torch CUDA tensor holding `array`'s bits (bfloat16 via its 16-bit pattern)."""
  array = np.ascontiguousarray(array)
  if array.dtype.name == "bfloat16":
    return torch.from_numpy(array.view(np.int16)).cuda().view(torch.bfloat16)
  return torch.from_numpy(array).cuda()


def to_host(tensor, dtype):
  if dtype.name == "bfloat16":
    return tensor.view(torch.int16).cpu().numpy().view(dtype)
  return tensor.cpu().numpy()


class Scalars:
  """The step's scalars in device memory, as the launchers read them."""

  def __init__(self, beta1_power, beta2_power, lr, beta1, beta2, epsilon, compute="float32",
               powers="float32"):
    c, p = TORCH_DTYPES[compute], TORCH_DTYPES[powers]
    self.tensors = [torch.tensor(beta1_power, dtype=p, device="cuda"),
                    torch.tensor(beta2_power, dtype=p, device="cuda")] + [
                        torch.tensor(x, dtype=c, device="cuda") for x in (lr, beta1, beta2, epsilon)]
    self.powers_are_double = powers == "float64"

  def pointers(self):
    b1p, b2p, lr, b1, b2, eps = (t.data_ptr() for t in self.tensors)
    return (b1p, b2p, self.powers_are_double, lr, b1, b2, eps)


def stream():
  """The current torch stream as the launchers take it."""
  return torch.cuda.current_stream().cuda_stream
