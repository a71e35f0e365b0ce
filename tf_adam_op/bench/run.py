"""Runs the benchmark: every (workload, mode) case measures all implementations in one go.

Within a case the implementations take turns (rounds of a few steps each) rather than running one
after another, so a noisy neighbour on a shared machine slows them alike; the bandwidth probe takes
its turn in every round for the same reason, and its best pass counts. Everything reported comes
from this one run.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import tf_adam_op
from tf_adam_op.bench import measure, stock_variants, tf_steps, torch_step

WEIGHT_DECAY = 1e-4
IMPLEMENTATIONS = {
    "stock": lambda: tf.compat.v1.train.AdamOptimizer(1e-3),
    "ours": lambda: tf_adam_op.AdamOptimizer(1e-3),
    "ours lazy": lambda: tf_adam_op.AdamOptimizer(1e-3, lazy=True),  # sparse workload only
    # Stock's equivalents: Adam plus contrib's separate decay op; ApplyAdamWithAmsgrad per variable.
    "stock adamw": lambda: stock_variants.ContribAdamW(WEIGHT_DECAY, 1e-3),
    "ours adamw": lambda: tf_adam_op.AdamWOptimizer(WEIGHT_DECAY, 1e-3),
    "stock amsgrad": lambda: stock_variants.StockAmsgrad(1e-3),  # dense resource variables only
    "ours amsgrad": lambda: tf_adam_op.AdamOptimizer(1e-3, amsgrad=True),
    # Keras 3's Adam and ours for Keras 3 (eager, tf.function and xla modes only: no TF1 sessions).
    "keras adam": lambda: _keras().optimizers.Adam(1e-3),
    "ours keras": lambda: _tf_adam_op_keras().Adam(1e-3),
    # 8-bit states (docs/state_8bit.md): dense resource variables outside XLA.
    "ours 8-bit": lambda: tf_adam_op.AdamOptimizer(1e-3, state_bits=8),
    "ours keras 8-bit": lambda: _tf_adam_op_keras().Adam(1e-3, state_bits=8),
}
# What each row's "vs stock" speed-up is measured against: its stock equivalent (stock's variants
# against stock Adam, showing what the separate ops cost).
STOCK_COUNTERPART = {"stock": "stock", "ours": "stock", "ours lazy": "stock", "stock adamw": "stock",
                     "ours adamw": "stock adamw", "stock amsgrad": "stock",
                     "ours amsgrad": "stock amsgrad", "keras adam": "keras adam",
                     "ours keras": "keras adam", "ours 8-bit": "stock",
                     "ours keras 8-bit": "keras adam"}
KERAS_IMPLEMENTATIONS = ("keras adam", "ours keras", "ours keras 8-bit")
EIGHT_BIT = ("ours 8-bit", "ours keras 8-bit")
# time_vs_ours: a row's time over this one's in the same case (AdamW and AMSGrad: over our Adam;
# 8-bit states: over the same family's float32 states; bitsandbytes: over our 8-bit states).
VS_OURS = {"ours adamw": "ours", "ours amsgrad": "ours", "ours 8-bit": "ours",
           "ours keras 8-bit": "ours keras", "bitsandbytes 8-bit": "ours 8-bit"}


def _keras():
  import keras
  return keras


def _tf_adam_op_keras():
  import tf_adam_op.keras
  return tf_adam_op.keras
TORCH = "torch fused"
BNB = "bitsandbytes 8-bit"  # bitsandbytes' Adam8bit, when torch and bitsandbytes are installed
OUTSIDE_TF = (TORCH, BNB)
WARMUP_STEPS = 2
ROUNDS = 3  # the implementations take turns this many times in a case


@dataclasses.dataclass
class Record:
  workload: str
  mode: str
  implementation: str
  median_ms: float
  steps: int
  # Peak memory a step allocates beyond its variables and slots (TF's allocator; none for torch).
  peak_extra_mib: Optional[float]
  # 28 bytes per parameter (36 with AMSGrad) / step time (dense workloads)
  bandwidth_gbs: Optional[float] = None
  bandwidth_fraction: Optional[float] = None  # of the probe's bandwidth in the same case
  speedup_vs_stock: Optional[float] = None  # its stock counterpart's time / this time
  time_vs_torch: Optional[float] = None  # this time / torch fused's time in the same case
  time_vs_ours: Optional[float] = None  # ours adamw / amsgrad: this time / ours (Adam)'s time


@dataclasses.dataclass
class Case:
  workload: str
  mode: str
  probe_gbs: Optional[float]
  records: list
  # xla mode: the median time of tf_steps.xla_launch_step (XLA's launch of a step updating the
  # workload's variables and their two slots, with no arithmetic), measured in the same rounds.
  xla_launch_ms: Optional[float] = None


def _implementations(workload, mode, names, device):
  """The implementations that apply to this workload, in the order given."""
  chosen = []
  for name in names:
    if name == "ours lazy" and not workload.sparse:
      continue
    if "amsgrad" in name and (workload.sparse or (name.startswith("stock") and mode == "tf1-ref")):
      continue  # stock has AMSGrad only as a dense kernel on resource variables
    if name in KERAS_IMPLEMENTATIONS and mode.startswith("tf1"):
      continue  # Keras 3 optimizers do not run in TF1 sessions
    if mode in tf_steps.KERAS_ONLY_MODES and (name not in KERAS_IMPLEMENTATIONS or workload.sparse):
      continue  # a Keras model's training step: Keras 3 optimizers, dense workloads
    if name == TORCH and (workload.sparse or not torch_step.torch_available(device.torch_device)):
      continue  # torch's sparse Adam is a different rule; no torch: no row, said in the report
    if name == BNB and (workload.sparse or not torch_step.bitsandbytes_available()):
      continue
    if name in EIGHT_BIT and (mode == "tf1-ref" or workload.sparse):
      continue  # 8-bit states: resource variables; dense workloads here
    if name in EIGHT_BIT and mode in ("xla", "fit-xla") and device.is_gpu:
      continue  # no 8-bit XLA kernel on GPUs yet (docs/state_8bit.md)
    chosen.append(name)
  return chosen


def _build(workload, mode, name, seed, device):
  if name == XLA_LAUNCH:
    return tf_steps.xla_launch_step(workload, seed, device.tf_device)
  if name == TORCH:
    return torch_step.torch_fused_step(workload, seed, device.torch_device)
  if name == BNB:
    return torch_step.bitsandbytes_adam8bit_step(workload, seed, device.torch_device)
  return tf_steps.BUILDERS[mode](workload, IMPLEMENTATIONS[name], seed, device.tf_device)


XLA_LAUNCH = "(xla launch)"  # a timed step next to the implementations, not an implementation


def run_case(workload, mode, names, steps, seed, device, progress):
  probes = []
  names = _implementations(workload, mode, names, device)
  built = {}
  timed = names + ([XLA_LAUNCH] if mode == "xla" and not workload.sparse else [])
  try:
    for name in timed:
      progress.set_postfix_str(f"building {name}")
      built[name] = _build(workload, mode, name, seed, device)
      for _ in range(WARMUP_STEPS):  # traces, creates slots, faults pages in
        built[name][0]()
      device.sync()
    seconds = {name: [] for name in timed}
    peaks = {}
    rounds = max(1, min(ROUNDS, steps))
    per_round = [steps // rounds + (r < steps % rounds) for r in range(rounds)]
    for r, count in enumerate(per_round):
      if not workload.sparse:  # the probe takes its turn too; the best of all rounds counts
        progress.set_postfix_str(f"bandwidth probe, round {r + 1}/{rounds}")
        probes.append(device.probe_bandwidth(workload.num_parameters, repeats=3))
      for name in timed:
        progress.set_postfix_str(f"{name}, round {r + 1}/{rounds}")
        built[name][0]()  # untimed: the previous implementation left its own data in the caches
        # TF's allocator statistics cannot see torch's (or bitsandbytes') memory.
        if r == 0 and name not in (*OUTSIDE_TF, XLA_LAUNCH):
          with measure.StepMemory(device.memory_device) as memory:
            seconds[name] += device.time_steps(built[name][0], count)
          peaks[name] = memory.extra_bytes
        else:
          seconds[name] += device.time_steps(built[name][0], count)
  finally:
    for step_and_close in built.values():
      step_and_close[1]()
  probe = max(probes) if probes else None
  launch = seconds.get(XLA_LAUNCH)
  return Case(workload.name, mode, probe and probe / 1e9,
              _records(workload, mode, names, seconds, peaks, probe),
              float(np.median(launch)) * 1e3 if launch else None)


def _records(workload, mode, names, seconds, peaks, probe):
  medians = {name: float(np.median(seconds[name])) for name in names}
  records = []
  for name in names:
    median = medians[name]
    peak = peaks.get(name)
    record = Record(workload.name, mode, name, median * 1e3, len(seconds[name]),
                    None if peak is None else peak / 2**20)
    if not workload.sparse:
      # The bytes the step must move (AdamW's decay adds none; AMSGrad adds vhat), over its time.
      needed = (measure.AMSGRAD_BYTES_PER_PARAMETER if "amsgrad" in name
                else measure.BYTES_PER_PARAMETER_8BIT if name in (*EIGHT_BIT, BNB)
                else measure.BYTES_PER_PARAMETER)
      record.bandwidth_gbs = needed * workload.num_parameters / median / 1e9
      record.bandwidth_fraction = record.bandwidth_gbs * 1e9 / probe
    counterpart = STOCK_COUNTERPART.get(name)
    if counterpart in medians:
      record.speedup_vs_stock = medians[counterpart] / median
    if TORCH in medians:
      record.time_vs_torch = median / medians[TORCH]
    if VS_OURS.get(name) in medians:
      record.time_vs_ours = median / medians[VS_OURS[name]]
    records.append(record)
  return records


def run(workloads, modes, names, steps, device, seed=0, quiet=False):
  """Measures every (workload, mode) case on `device` (device.Device); returns the Cases."""
  cases = [(w, m) for w in workloads for m in modes]
  progress = tqdm(cases, disable=quiet, unit="case")
  results = []
  for workload, mode in progress:
    progress.set_description(f"{workload.name}/{mode}")
    results.append(run_case(workload, mode, names, steps, seed, device, progress))
  progress.close()
  return results
