"""`tf-adam-op bench`: stock v1 Adam, tf_adam_op and PyTorch's fused Adam, measured in one run;
also AdamW and AMSGrad, ours against stock's composed equivalents (run.STOCK_COUNTERPART).

Workloads (workloads.py) x modes (eager, tf.function, TF1 session with ref or resource variables)
x implementations, on the CPU or a GPU (device.py); a bandwidth probe per case gives the fraction
of the machine's bandwidth each step reaches. Prints a table and the goals met or missed; writes
JSON and a PNG chart.
"""

from tf_adam_op.bench import report
from tf_adam_op.bench.device import NoGpuError, device as make_device
from tf_adam_op.bench.run import BNB, IMPLEMENTATIONS, TORCH, run
from tf_adam_op.bench.tf_steps import MODES
from tf_adam_op.bench.workloads import WORKLOADS


def main(workload_names, modes, implementations, steps, scale, json_path, png_path, seed=0,
         quiet=False, device_name="cpu"):
  """Runs the benchmark and writes its outputs; NoGpuError for device_name "gpu" without one."""
  device = make_device(device_name)
  print(f"device: {device.name} ({device.description})")
  workloads = [WORKLOADS[name].scaled(scale) for name in workload_names]
  for workload in workloads:
    print(f"{workload.name}: {workload.description} ({workload.num_parameters:,} parameters)")
  cases = run(workloads, modes, implementations, steps, device, seed=seed, quiet=quiet)
  reference = ("a device-to-device copy of as many bytes" if device.is_gpu
               else "the probe's 4-read/3-write stream")
  print(f"\nmedian of {steps} steps per implementation; 'of BW': 28 bytes per parameter per step "
        f"(36 with AMSGrad's vhat) over the bandwidth of {reference}; "
        "'vs stock': speed-up over its stock equivalent "
        "(stock adamw / amsgrad: over stock Adam); 'vs torch': time ratio; 'vs ours': time ratio "
        "to our Adam (8-bit rows: to the same family's float32 states; bitsandbytes: to ours "
        "8-bit); 8-bit rows' 'of BW' count 16 bytes per parameter; "
        "'peak MiB': peak memory a step allocates beyond variables and slots (TF's allocator "
        "statistics)\n")
  print(report.table(cases))
  targets, notes = report.evaluate_targets(cases, device.name)
  where = "this GPU" if device.is_gpu else "this CPU"
  print(f"\nours against its goals on {where}:" if targets else "\nno goal applies to these cases")
  print(report.targets_text(targets, notes))
  report.write_json(json_path, cases, targets, notes, device, scale, workloads)
  report.write_png(png_path, cases, device, scale)
  print(f"\nwrote {json_path} and {png_path}")
  return cases, targets


__all__ = ["main", "NoGpuError", "BNB", "IMPLEMENTATIONS", "TORCH", "MODES", "WORKLOADS"]
