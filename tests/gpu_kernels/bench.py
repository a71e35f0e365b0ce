"""GPU benchmark of the kernels without TensorFlow: our multi-tensor launch (what
ResourceApplyAdamV1Multi runs on a GPU: the update launches, then the beta power advance) against
torch.optim.Adam(fused=True) and (foreach=True) on the same tensors, and our sparse launch against
torch's SparseAdam (lazy) and a dense fused step (all rows). Timed with CUDA events around each
step, median over the steps; the bandwidth reference is a device-to-device copy (best of several),
so "of copy" is the fraction of the bytes per second of a copy moving as many bytes as the step
(each array read once and written once: var, m, v read and written, grad read, 7 per element).

  python3 tests/gpu_kernels/bench.py --out OUTDIR [--quick] [--steps 30]

Writes OUTDIR/gpu_bench.json and OUTDIR/gpu_bench.png and prints a table and the targets."""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gpu_support
import reference
from gpu_support import HARNESS, torch


def _resnet50_shapes():
  """The package's own list (tf_adam_op/bench/workloads.py, loaded by path: importing the package
  would import TensorFlow)."""
  path = os.path.join(gpu_support.ROOT, "tf_adam_op", "bench", "workloads.py")
  spec = importlib.util.spec_from_file_location("workloads", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.resnet50_shapes()


def workloads(quick):
  scale = 16 if quick else 1
  return {
      "large": [(2**28 // scale,)],
      "many200": [(4096,)] * 200,
      "many2000": [(4096,)] * (2000 // scale),
      "mixed": _resnet50_shapes(),
  }


def _event_times(step, steps, warmup=3):
  """Per-step milliseconds from CUDA events on the current stream; median."""
  for _ in range(warmup):
    step()
  torch.cuda.synchronize()
  times = []
  for _ in range(steps):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    end.synchronize()
    times.append(start.elapsed_time(end))
  return statistics.median(times)


def copy_bandwidth(bytes_moved, passes=10):
  """GB/s of a device-to-device copy moving `bytes_moved` (half read, half written), best pass."""
  n = max(1, int(bytes_moved // 2))
  src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
  dst = torch.empty_like(src)
  best = None
  for _ in range(passes):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    error = HARNESS.copy_device_to_device(gpu_support.stream(), dst.data_ptr(), src.data_ptr(), n)
    end.record()
    end.synchronize()
    assert not error, error
    ms = start.elapsed_time(end)
    best = ms if best is None else min(best, ms)
  del src, dst
  return 2 * n / (best * 1e-3) / 1e9


def _tensors(shapes, dtype, seed=0):
  generator = torch.Generator(device="cuda").manual_seed(seed)
  made = []
  for shape in shapes:
    var = torch.randn(shape, device="cuda", dtype=dtype, generator=generator)
    m = 0.1 * torch.randn(shape, device="cuda", dtype=dtype, generator=generator)
    v = 0.01 + 0.01 * torch.rand(shape, device="cuda", dtype=dtype, generator=generator)
    grad = torch.randn(shape, device="cuda", dtype=dtype, generator=generator)
    made.append((var, m, v, grad))
  return made


def time_ours(shapes, dtype_name, steps):
  dtype = gpu_support.TORCH_DTYPES[dtype_name]
  state = _tensors(shapes, dtype)
  scalars = gpu_support.Scalars(0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)
  powers = scalars.tensors[:2]
  betas = scalars.tensors[3:5]
  pointers = [tuple(t.data_ptr() for t in s) + (s[0].numel(),) for s in state]
  s = gpu_support.stream()

  def step():
    error = HARNESS.launch_multi(s, dtype_name, False, pointers, scalars.pointers())
    error = error or HARNESS.launch_advance_powers(s, powers[0].data_ptr(), powers[1].data_ptr(),
                                                   False, betas[0].data_ptr(), betas[1].data_ptr(),
                                                   False)
    assert not error, error
  return _event_times(step, steps)


def time_torch(shapes, dtype_name, steps, **flavour):
  dtype = gpu_support.TORCH_DTYPES[dtype_name]
  params = []
  for var, _, _, grad in _tensors(shapes, dtype):
    p = torch.nn.Parameter(var)
    p.grad = grad
    params.append(p)
  optimizer = torch.optim.Adam(params, lr=1e-3, **flavour)
  return _event_times(optimizer.step, steps)


def time_sparse(steps, quick):
  """1M x 64 float32 (62,500 rows when quick), 4096 indices drawn from 3000 rows (duplicates)."""
  rows = 62_500 if quick else 1_000_000
  width, batch = 64, 4096
  rng = np.random.default_rng(0)
  indices = rng.integers(0, 3000, batch)
  table = _tensors([(rows, width)], torch.float32)[0]
  grad = torch.randn(batch, width, device="cuda")
  order, starts, unique = (gpu_support.to_device(x) for x in reference.segments(indices))
  summed = torch.empty(unique.numel() * width, device="cuda")
  scalars = gpu_support.Scalars(0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)
  s = gpu_support.stream()
  results = {}
  for lazy in (True, False):
    def step(lazy=lazy):
      error = HARNESS.launch_sparse(
          s, "float32", lazy, False, *(t.data_ptr() for t in table[:3]), rows, width,
          grad.data_ptr(), 0, order.data_ptr(), starts.data_ptr(), unique.data_ptr(),
          unique.numel(), summed.data_ptr(), scalars.pointers())
      assert not error, error
    results["ours lazy" if lazy else "ours all rows"] = _event_times(step, steps)
  embedding = torch.nn.Parameter(table[0].clone())
  sparse_grad = torch.sparse_coo_tensor(torch.as_tensor(indices, device="cuda")[None], grad,
                                        (rows, width))
  lazy_torch = torch.optim.SparseAdam([embedding], lr=1e-3)

  def torch_lazy_step():
    embedding.grad = sparse_grad
    lazy_torch.step()
  results["torch SparseAdam (lazy)"] = _event_times(torch_lazy_step, steps)
  dense = torch.nn.Parameter(table[0].clone())
  dense.grad = torch.zeros_like(dense).index_add_(0, torch.as_tensor(indices, device="cuda"), grad)
  fused = torch.optim.Adam([dense], lr=1e-3, fused=True)
  results["torch fused, dense gradient (all rows)"] = _event_times(fused.step, steps)
  return {"rows": rows, "width": width, "batch": batch, "unique": int(unique.numel()),
          "ms": results}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=".")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--quick", action="store_true", help="smaller workloads, fewer steps")
  args = parser.parse_args(argv)
  if HARNESS is None or not gpu_support.GPU:
    print(f"gpu bench: {gpu_support.HARNESS_MISSING or gpu_support.NO_GPU}")
    return 2
  steps = 10 if args.quick else args.steps
  copy_gbs = copy_bandwidth(2**31 if not args.quick else 2**28)  # a large copy, for the header
  document = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "cuda_kernels": HARNESS.cuda_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                            time.gmtime()),
              "copy_gbs": copy_gbs, "steps": steps, "dense": [], "targets": []}
  print(f"{document['gpu']}; device-to-device copy {copy_gbs:.0f} GB/s (read + write)")
  print(f"{'workload':9} {'dtype':9} {'ours ms':>9} {'fused ms':>9} {'foreach ms':>10} "
        f"{'ours/fused':>10} {'copy GB/s':>9} {'of copy':>8}")
  for name, shapes in workloads(args.quick).items():
    elements = sum(int(np.prod(s)) for s in shapes)
    for dtype_name in ("float32", "bfloat16"):
      ours = time_ours(shapes, dtype_name, steps)
      fused = time_torch(shapes, dtype_name, steps, fused=True)
      foreach = time_torch(shapes, dtype_name, steps, foreach=True)
      step_bytes = 7 * (4 if dtype_name == "float32" else 2) * elements
      case_copy_gbs = copy_bandwidth(step_bytes)  # a copy moving as many bytes as the step
      fraction = step_bytes / (ours * 1e-3) / 1e9 / case_copy_gbs
      document["dense"].append({"workload": name, "dtype": dtype_name, "tensors": len(shapes),
                                "elements": elements, "ours_ms": ours, "torch_fused_ms": fused,
                                "torch_foreach_ms": foreach, "copy_gbs": case_copy_gbs,
                                "of_copy": fraction})
      print(f"{name:9} {dtype_name:9} {ours:9.3f} {fused:9.3f} {foreach:10.3f} "
            f"{ours / fused:10.2f} {case_copy_gbs:9.0f} {fraction:8.2f}")
      if name == "large":
        document["targets"].append((f"large {dtype_name}: at least 0.90 of copy bandwidth",
                                    fraction >= 0.90, f"{fraction:.2f}"))
      if name in ("large", "many200", "many2000"):
        document["targets"].append((f"{name} {dtype_name}: no slower than torch fused",
                                    ours <= fused, f"{ours / fused:.2f}x its time"))
  sparse = time_sparse(steps, args.quick)
  document["sparse"] = sparse
  print(f"sparse {sparse['rows']:,} x {sparse['width']}, {sparse['batch']} indices "
        f"({sparse['unique']} rows):")
  for label, ms in sparse["ms"].items():
    print(f"  {label:40} {ms:9.3f} ms")
  lazy, all_rows = sparse["ms"]["ours lazy"], sparse["ms"]["ours all rows"]
  document["targets"].append(("sparse: lazy touches only the named rows (far faster than all "
                              "rows)", lazy * 10 < all_rows, f"{all_rows / lazy:.1f}x"))
  print("targets:")
  for target, met, detail in document["targets"]:
    print(f"  {'met' if met else 'MISSED':>6}: {target} ({detail})")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
    json.dump(document, f, indent=1)
  _chart(document, os.path.join(args.out, "gpu_bench.png"))
  return 0


def _chart(document, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = document["dense"]
  labels = [f"{r['workload']}\n{r['dtype']}" for r in rows]
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(max(8, len(rows)), 4))
  for k, (key, name) in enumerate((("ours_ms", "tf_adam_op"), ("torch_fused_ms", "torch fused"),
                                   ("torch_foreach_ms", "torch foreach"))):
    ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=name)
  ax.set_xticks(x)
  ax.set_xticklabels(labels, fontsize=8)
  ax.set_yscale("log")
  ax.set_ylabel("ms per step (median, CUDA events)")
  ax.legend()
  ax.set_title(f"{document['gpu']}, {document['date']}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  sys.exit(main())
