"""One small case of every kernel, for compute-sanitizer (memcheck, racecheck): dense (adam and
nesterov), multi-tensor (more than one launch's worth of tensors, empty ones among them), sparse
(lazy and all rows, v's term inside and given), AMSGrad with weight decay (dense, multi-tensor),
8-bit states (dense, sparse), the beta power advance; every dtype. Exits 1 if a
launch reports an error. Run: compute-sanitizer --tool memcheck python3 sanitize_cases.py"""

import sys

import numpy as np

import gpu_support
from gpu_support import HARNESS, Scalars, stream, to_device, torch
import reference


def _check(error, what):
  if error:
    print(f"{what}: {error}")
    sys.exit(1)


def main():
  if HARNESS is None or not gpu_support.GPU:
    print(gpu_support.HARNESS_MISSING or gpu_support.NO_GPU)
    return 1
  rng = np.random.default_rng(0)
  for name in ("float16", "bfloat16", "float32", "float64"):
    dtype = gpu_support.numpy_dtype(name)
    compute = "float64" if name == "float64" else "float32"
    scalars = Scalars(0.7, 0.9, 0.01, 0.9, 0.999, 1e-8, compute=compute).pointers()
    for nesterov in (False, True):
      d = [to_device(rng.standard_normal(1000).astype(dtype)) for _ in range(4)]
      _check(HARNESS.launch_dense(stream(), name, nesterov, *(x.data_ptr() for x in d), 1000,
                                  scalars), f"dense {name}")
    sizes = [0, 5, 300, 0, 1] * 12  # 60 tensors: two launches
    tensors = [[to_device(rng.standard_normal(size).astype(dtype)) for _ in range(4)]
               for size in sizes]
    _check(HARNESS.launch_multi(stream(), name, False,
                                [tuple(x.data_ptr() for x in t) + (t[0].numel(),) for t in tensors],
                                scalars), f"multi {name}")
    rows, width = 50, 9
    indices = rng.integers(0, rows, 40)
    order, starts, unique = (to_device(x) for x in reference.segments(indices))
    for lazy in (False, True):
      for with_v_term in (False, True):
        table = [to_device(rng.standard_normal((rows, width)).astype(dtype)) for _ in range(3)]
        grad = to_device(rng.standard_normal((40, width)).astype(dtype))
        v_term = to_device(rng.standard_normal((40, width)).astype(dtype)) if with_v_term else None
        summed = torch.empty(2 * unique.numel() * width, device="cuda",
                             dtype=torch.float64 if name == "float64" else torch.float32)
        _check(HARNESS.launch_sparse(
            stream(), name, lazy, False, *(x.data_ptr() for x in table), rows, width,
            grad.data_ptr(), v_term.data_ptr() if with_v_term else 0, order.data_ptr(),
            starts.data_ptr(), unique.data_ptr(), unique.numel(), summed.data_ptr(), scalars),
            f"sparse {name} lazy={lazy}")
    decay = torch.tensor(0.01, device="cuda",
                         dtype=torch.float64 if name == "float64" else torch.float32)
    vhats = [to_device(np.abs(rng.standard_normal(size)).astype(dtype)) for size in sizes]
    for times_lr in (False, True):  # AMSGrad with either weight decay convention
      d = [to_device(rng.standard_normal(1000).astype(dtype)) for _ in range(5)]
      _check(HARNESS.launch_dense(stream(), name, False, *(x.data_ptr() for x in d[:4]), 1000,
                                  scalars, vhat=d[4].data_ptr(), weight_decay=decay.data_ptr(),
                                  weight_decay_times_lr=times_lr), f"dense variant {name}")
      _check(HARNESS.launch_multi(
          stream(), name, False,
          [tuple(x.data_ptr() for x in t) + (t[0].numel(),) for t in tensors], scalars,
          vhats=[x.data_ptr() for x in vhats], weight_decay=decay.data_ptr(),
          weight_decay_times_lr=times_lr), f"multi variant {name}")
    # 8-bit states: dense (a short last block) and sparse over the same segments.
    size = 1000
    blocks = -(-size // 256)
    states = [to_device(x) for _ in range(2)
              for x in (rng.integers(0, 256, size).astype(np.uint8),
                        np.abs(rng.standard_normal(blocks)).astype(np.float32))]
    d = [to_device(rng.standard_normal(size).astype(dtype)) for _ in range(2)]
    _check(HARNESS.launch_dense_8bit(stream(), name, False, d[0].data_ptr(), d[1].data_ptr(), size,
                                     [x.data_ptr() for x in states], scalars), f"dense 8-bit {name}")
    table = to_device(rng.standard_normal((rows, width)).astype(dtype))
    codes = [to_device(rng.integers(0, 256, rows * width).astype(np.uint8)) for _ in range(2)]
    scales = [to_device(np.ones(-(-rows * width // 256), np.float32)) for _ in range(2)]
    block_list = to_device(np.arange(-(-rows * width // 256), dtype=np.int64))
    grad = to_device(rng.standard_normal((40, width)).astype(dtype))
    summed = torch.empty(unique.numel() * width, device="cuda",
                         dtype=torch.float64 if name == "float64" else torch.float32)
    _check(HARNESS.launch_sparse_8bit(
        stream(), name, False, table.data_ptr(),
        [codes[0].data_ptr(), scales[0].data_ptr(), codes[1].data_ptr(), scales[1].data_ptr()],
        rows, width, grad.data_ptr(), order.data_ptr(), starts.data_ptr(), unique.data_ptr(),
        unique.numel(), block_list.data_ptr(), block_list.numel(), summed.data_ptr(), scalars),
        f"sparse 8-bit {name}")
  powers = [torch.tensor(0.5, device="cuda") for _ in range(2)]
  betas = [torch.tensor(0.9, device="cuda", dtype=torch.float64) for _ in range(2)]
  _check(HARNESS.launch_advance_powers(stream(), *(p.data_ptr() for p in powers), False,
                                       *(b.data_ptr() for b in betas), True), "advance powers")
  _check(HARNESS.synchronize_stream(stream()), "synchronize")
  print("every kernel ran")
  return 0


if __name__ == "__main__":
  sys.exit(main())
