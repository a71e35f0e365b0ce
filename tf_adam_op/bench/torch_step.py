"""PyTorch's fused Adam on the same dense workload, when torch is installed (an optional extra)."""

import os


def torch_available(device="cpu"):
  """Whether torch is installed (and, for "cuda", sees a GPU)."""
  try:
    import torch
  except ImportError:
    return False
  return device != "cuda" or torch.cuda.is_available()


def torch_version():
  import torch
  return torch.__version__


def synchronize_cuda():
  """Waits for torch's CUDA work, when torch is loaded and has CUDA; otherwise nothing."""
  import sys
  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.synchronize()


def _parameters(workload, seed, device):
  """torch Parameters of the workload's shapes on `device`, with gradients (all CPU threads)."""
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  generator = torch.Generator().manual_seed(seed)
  params = []
  for shape in workload.shapes:
    param = torch.nn.Parameter(torch.randn(shape, generator=generator).to(device))
    param.grad = (torch.randn(shape, generator=generator) * 1e-3).to(device)
    params.append(param)
  return params


def torch_fused_step(workload, seed, device="cpu"):
  """(step, close) for torch.optim.Adam(fused=True) over the workload's shapes on `device` ("cpu":
  all CPU threads, or "cuda")."""
  import torch
  optimizer = torch.optim.Adam(_parameters(workload, seed, device), lr=1e-3, fused=True)
  return optimizer.step, lambda: None


def bitsandbytes_available():
  """Whether torch and bitsandbytes are installed (an optional extra, in a venv of its own)."""
  try:
    import bitsandbytes  # noqa: F401
  except ImportError:
    return False
  return True


def bitsandbytes_adam8bit_step(workload, seed, device="cpu"):
  """(step, close) for bitsandbytes.optim.Adam8bit over the workload's shapes (its CPU or CUDA
  kernels), the 8-bit states tf_adam_op's state_bits=8 matches."""
  import bitsandbytes
  optimizer = bitsandbytes.optim.Adam8bit(_parameters(workload, seed, device), lr=1e-3)
  return optimizer.step, lambda: None
