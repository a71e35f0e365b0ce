"""PyTorch's fused Adam on the same dense workload, when torch is installed (an optional extra)."""

import os


def torch_available():
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def torch_version():
  import torch  # pylint: disable=g-import-not-at-top
  return torch.__version__


def torch_fused_step(workload, seed):
  """(step, close) for torch.optim.Adam(fused=True) over the workload's shapes, all CPU threads."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  generator = torch.Generator().manual_seed(seed)
  params = []
  for shape in workload.shapes:
    param = torch.nn.Parameter(torch.randn(shape, generator=generator))
    param.grad = torch.randn(shape, generator=generator) * 1e-3
    params.append(param)
  optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
  return optimizer.step, lambda: None
