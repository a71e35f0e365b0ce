"""The benchmark's outputs: the table, the targets met or not, a JSON file and a PNG chart."""

import dataclasses
import json
import os
import platform
import time

import tensorflow as tf

from tf_adam_op.bench import torch_step
from tf_adam_op.bench.device import cpu_model
from tf_adam_op.bench.run import STOCK_COUNTERPART

# The goals ours is held to, as (workload, modes, what, check, wording): on the CPU against the
# bandwidth probe and torch's fused Adam; on a GPU against a device-to-device copy and stock.
SESSION_AND_FUNCTION = ("tf.function", "tf1-ref", "tf1-resource")
ALL_MODES = ("eager",) + SESSION_AND_FUNCTION
TARGETS = {
    "cpu": (
        ("large", ALL_MODES, "bandwidth_fraction", lambda x: x >= 0.90,
         "at least 0.90 of the probed bandwidth"),
        ("mixed", ALL_MODES, "bandwidth_fraction", lambda x: x >= 0.85,
         "at least 0.85 of the probed bandwidth"),
        ("many", ("eager",), "time_vs_torch", lambda x: x <= 1.0, "no slower than torch fused"),
        ("many", SESSION_AND_FUNCTION, "time_vs_torch", lambda x: x <= 0.8,
         "at most 0.8x torch fused's time"),
    ),
    "gpu": (
        ("large", ALL_MODES, "bandwidth_fraction", lambda x: x >= 0.85,
         "at least 0.85 of device-to-device copy bandwidth"),
        ("many", ("tf.function",), "speedup_vs_stock", lambda x: x >= 5.0,
         "at least 5x faster than stock"),
    ),
}


# AdamW moves Adam's bytes (the decay is in the same pass); AMSGrad one more array read and written.
VARIANT_TARGETS = (("ours adamw", "stock adamw", 1.05, "at most 1.05x our Adam's step time"),
                   ("ours amsgrad", "stock amsgrad", 36 / 28,
                    "at most 36/28 of our Adam's step time"))
VARIANT_WORKLOADS = ("large", "mixed")


# Ours for Keras 3 against Keras 3's Adam, each row's "vs stock" (its counterpart: keras adam).
KERAS_TARGETS = (("large", "tf.function", 4.0), ("mixed", "tf.function", 4.0),
                 ("many", "tf.function", 3.0), ("many", "eager", 50.0),
                 ("large", "xla", 1.3), ("mixed", "xla", 1.0), ("many", "xla", 2.5),
                 ("large", "fit-xla", 1.0), ("mixed", "fit-xla", 1.0), ("many", "fit-xla", 1.0))


# Under XLA the ops run through their XLA kernels: each implementation's xla step at most this many
# times its own tf.function step (the op's time without XLA).
XLA_TARGETS = (("large", 1.1), ("mixed", 1.1), ("many", 1.3))
XLA_IMPLEMENTATIONS = ("ours", "ours keras")


def _case(cases, workload, mode):
  return next((c for c in cases if c.workload == workload and c.mode == mode), None)


def _launch_detail(case, ms):
  """What XLA's launch alone (the '(xla launch)' row) takes, as a ratio to `ms`: the part of an
  XLA step no kernel can remove."""
  if case is None or case.xla_launch_ms is None:
    return ""
  return f"; XLA's launch alone {case.xla_launch_ms / ms:.2f}x"


def _xla_targets(cases):
  results = []
  limits = dict(XLA_TARGETS)
  for workload, limit in XLA_TARGETS:
    xla, function = _ours(cases, workload, "xla"), _ours(cases, workload, "tf.function")
    if xla is None or function is None:
      continue
    for name in XLA_IMPLEMENTATIONS:
      if name in xla and name in function:
        ratio = xla[name].median_ms / function[name].median_ms
        launch = _launch_detail(_case(cases, workload, "xla"), function[name].median_ms)
        results.append((f"{workload} / xla: {name} within {limits[workload]:g}x of its "
                        "tf.function step", "met" if ratio <= limit else "missed",
                        f"{ratio:.2f}x{launch}"))
  return results


def _keras_targets(cases):
  results = []
  goals = {(w, m): x for w, m, x in KERAS_TARGETS}
  for case in cases:
    goal = goals.get((case.workload, case.mode))
    rows = {r.implementation: r for r in case.records}
    if goal is None or "ours keras" not in rows or "keras adam" not in rows:
      continue
    speedup = rows["ours keras"].speedup_vs_stock
    wording = (f"at least {goal:g}x faster than Keras's Adam" if goal > 1
               else "not slower than Keras's Adam")
    # Under XLA: the most any optimizer could gain, were its update free (Keras's time over the launch).
    bound = ("" if case.xla_launch_ms is None else
             f"; at most {rows['keras adam'].median_ms / case.xla_launch_ms:.2f}x with a free update")
    results.append((f"{case.workload} / {case.mode}: ours keras {wording}",
                    "met" if speedup >= goal else "missed", f"{speedup:.2f}x{bound}"))
  return results


def _fmt(value, pattern, missing="-"):
  return missing if value is None else pattern.format(value)


def table(cases):
  header = (f"{'workload':9} {'mode':13} {'implementation':14} {'ms/step':>9} {'GB/s':>7} "
            f"{'of BW':>6} {'vs stock':>9} {'vs torch':>9} {'vs ours':>8} {'peak MiB':>9}")
  lines = [header, "-" * len(header)]
  for case in cases:
    for r in case.records:
      lines.append(
          f"{r.workload:9} {r.mode:13} {r.implementation:14} {r.median_ms:9.3f} "
          f"{_fmt(r.bandwidth_gbs, '{:.1f}'):>7} {_fmt(r.bandwidth_fraction, '{:.2f}'):>6} "
          f"{_fmt(r.speedup_vs_stock, '{:.2f}x'):>9} {_fmt(r.time_vs_torch, '{:.2f}x'):>9} "
          f"{_fmt(r.time_vs_ours, '{:.2f}x'):>8} {_fmt(r.peak_extra_mib, '{:.1f}'):>9}")
    if case.probe_gbs is not None:
      lines.append(f"{'':9} {case.mode:13} {'(probe)':14} {'':9} {case.probe_gbs:7.1f}")
    if case.xla_launch_ms is not None:
      lines.append(f"{'':9} {case.mode:13} {'(xla launch)':14} {case.xla_launch_ms:9.3f}")
  return "\n".join(lines)


def _ours(cases, workload, mode):
  for case in cases:
    if case.workload == workload and case.mode == mode:
      return {r.implementation: r for r in case.records}
  return None


def evaluate_targets(cases, device_name="cpu"):
  """Judges the goals the run measured: ([(goal, status, detail)], notes), status "met" or
  "missed"; goals of cases not run are left out, and each note says in a line what the run could
  not judge and why (torch missing, no allocator statistics)."""
  results, unjudged_torch = [], 0
  for workload, modes, field, check, wording in TARGETS[device_name]:
    for mode in modes:
      rows = _ours(cases, workload, mode)
      if rows is None or "ours" not in rows:
        continue  # the case was not run
      value = getattr(rows["ours"], field)
      if value is None:
        unjudged_torch += field == "time_vs_torch"
        continue
      results.append((f"{workload} / {mode}: {wording}", "met" if check(value) else "missed",
                      f"{value:.2f}"))
  results += _variant_targets(cases)
  results += _keras_targets(cases)
  results += _xla_targets(cases)
  unmeasured_memory = 0
  for case in cases:
    rows = {r.implementation: r for r in case.records}
    if "stock" not in rows or "ours" not in rows:
      continue
    ours, stock = rows["ours"].peak_extra_mib, rows["stock"].peak_extra_mib
    if ours is None or stock is None:
      unmeasured_memory += 1
      continue
    results.append((f"{case.workload} / {case.mode}: step peak memory no higher than stock",
                    "met" if ours <= stock else "missed",
                    f"ours {ours:.1f} MiB, stock {stock:.1f} MiB"))
  notes = []
  if unjudged_torch:
    why = ("torch fused was not among --impl" if torch_step.torch_available() else
           "torch is not installed (pip install torch; a CPU build is enough)")
    notes.append(f"{unjudged_torch} comparison(s) with PyTorch's fused Adam not judged: {why}.")
  if unmeasured_memory:
    notes.append(f"peak memory not compared in {unmeasured_memory} case(s): TensorFlow keeps no "
                 "allocator statistics for this CPU (TF_ENABLE_ONEDNN_OPTS=1 turns them on).")
  return results, notes


def _variant_targets(cases):
  """AdamW's and AMSGrad's goals: a step time close to our Adam's (they move as many bytes, or one
  more array), and a margin over their stock equivalents at least our Adam's over stock Adam."""
  results = []
  for case in cases:
    if case.workload not in VARIANT_WORKLOADS:
      continue
    rows = {r.implementation: r for r in case.records}
    for name, stock_name, limit, wording in VARIANT_TARGETS:
      if name not in rows or "ours" not in rows:
        continue
      ratio = rows[name].time_vs_ours
      results.append((f"{case.workload} / {case.mode}: {name} {wording}",
                      "met" if ratio <= limit else "missed", f"{ratio:.2f}"))
      ours_margin = rows["ours"].speedup_vs_stock
      margin = rows[name].speedup_vs_stock
      if stock_name in rows and ours_margin is not None and margin is not None:
        results.append((f"{case.workload} / {case.mode}: {name} beats {stock_name} by at least our "
                        "Adam's margin over stock", "met" if margin >= ours_margin else "missed",
                        f"{margin:.2f}x vs {ours_margin:.2f}x"))
  return results


def targets_text(results, notes):
  lines = [f"  {status:>6}: {name} ({detail})" for name, status, detail in results]
  return "\n".join(lines + [f"  note: {note}" for note in notes])


def machine(device):
  return {"device": device.name, "device_description": device.description,
          "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
          "tensorflow": tf.__version__,
          "torch": torch_step.torch_version() if torch_step.torch_available() else None,
          "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def baselines():
  """What each implementation's "vs stock" speed-up is measured against (run.STOCK_COUNTERPART)."""
  return dict(STOCK_COUNTERPART)


def write_json(path, cases, targets, notes, device, scale=1.0, workloads=()):
  """The run as JSON: the machine, the scale and the workloads' sizes as run, what each speed-up is
  measured against, every case's records, the goals."""
  document = {
      "machine": machine(device),
      "scale": scale,
      "workloads": {w.name: {"description": w.description, "parameters": w.num_parameters}
                    for w in workloads},
      "speedup_baseline": baselines(),
      "cases": [dataclasses.asdict(case) for case in cases],
      "targets": [{"target": n, "status": s, "detail": d} for n, s, d in targets],
      "notes": notes,
  }
  with open(path, "w") as f:
    json.dump(document, f, indent=1)


def write_png(path, cases, device, scale=1.0):
  """Two panels: each implementation's speed-up over its baseline (the legend names it: stock v1
  Adam, stock's AdamW/AMSGrad composition, or Keras's Adam) per case, and the fraction of bandwidth
  for dense cases; the title says the machine, TF and the scale."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  labels = [f"{c.workload}\n{c.mode}" for c in cases]
  names = []
  for case in cases:
    names += [r.implementation for r in case.records if r.implementation not in names]
  width = 0.8 / max(1, len(names))
  fig, (speed, bandwidth) = plt.subplots(2, 1, figsize=(max(8, 1.2 * len(cases)), 8))
  for k, name in enumerate(names):
    xs, speedups, fractions, fraction_xs = [], [], [], []
    for i, case in enumerate(cases):
      rows = {r.implementation: r for r in case.records}
      if name in rows and rows[name].speedup_vs_stock is not None:
        xs.append(i + k * width)
        speedups.append(rows[name].speedup_vs_stock)
      if name in rows and rows[name].bandwidth_fraction is not None:
        fraction_xs.append(i + k * width)
        fractions.append(rows[name].bandwidth_fraction)
    color = f"C{k}"  # one color per implementation in both panels
    baseline = STOCK_COUNTERPART.get(name)
    label = name if baseline in (None, name) else f"{name} (vs {baseline})"
    speed.bar(xs, speedups, width, label=label, color=color)
    if fractions:
      bandwidth.bar(fraction_xs, fractions, width, label=name, color=color)
  for axis in (speed, bandwidth):
    axis.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cases))])
    axis.set_xticklabels(labels, fontsize=7)
    axis.legend(fontsize=8)
  speed.set_yscale("log")
  speed.axhline(1.0, color="gray", linewidth=0.8)
  speed.set_ylabel("speed-up over its baseline (legend)")
  bandwidth.axhline(1.0, color="gray", linewidth=0.8)
  bandwidth.set_ylabel("fraction of copy bandwidth" if device.is_gpu
                       else "fraction of probed bandwidth")
  info = machine(device)
  where = (f"{info['device_description']}" if device.is_gpu
           else f"{info['cpu']}, {info['cores']} cores")
  scaled = "" if scale == 1 else f", workloads scaled by {scale:g}"
  fig.suptitle(f"tf_adam_op bench: {where}, TF {info['tensorflow']}, {info['date']}{scaled}",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
