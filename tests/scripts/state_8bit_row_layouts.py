"""How 8-bit blocks meet an embedding table's rows (docs/state_8bit.md, "Sparse gradients and lazy
mode"): the project's layout, bitsandbytes' (blocks of 256 elements of the flat table, whatever
the row width), against row-aligned blocks (every row starts a block of its own: a row of w
elements takes ceil(w / 256) blocks), on lazy Adam steps over Zipf-distributed rows.

Per row width, for a table of about 3.2M elements:
  bytes of state per parameter: the flat layout's from its variables; row-aligned, counted;
  elements a lazy step decodes and re-encodes: the flat layout's are those of every block holding
    a named row's element (what the op touches); row-aligned, the named rows' own;
  the lazy op's time on the flat layout (median), and what scaling it by the element counts
    predicts for row-aligned blocks (the op's time is proportional to the blocks it touches);
  the drift of the elements a step does not update but re-encodes (the named rows' neighbours in
    their blocks, flat layout only): the share of their codes that change, and the mean change of
    their decoded m relative to the block's absmax. Row-aligned blocks have none by construction.

  python tests/scripts/state_8bit_row_layouts.py [--steps 30] [--json out.json]
"""

import argparse
import json
import time

import numpy as np

BLOCK = 256
TABLE_ELEMENTS = 3_200_000


def flat_blocks(rows, width):
  """The sorted blocks of the flat layout holding an element of `rows`."""
  first = rows * width // BLOCK
  last = ((rows + 1) * width - 1) // BLOCK
  return np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)]))


def measure(width, steps, batch, seed=0):
  import tensorflow as tf
  from tf_adam_op import ops
  from tf_adam_op import state_8bit

  rows = TABLE_ELEMENTS // width
  size = rows * width
  blocks = -(-size // BLOCK)
  rng = np.random.default_rng(seed)
  var = tf.Variable(rng.normal(size=(rows, width)).astype(np.float32) * 0.1)
  states = [(tf.Variable(np.zeros((rows, width), np.uint8)), tf.Variable(np.zeros(blocks, np.float32)))
            for _ in range(2)]
  handles = [(codes.handle, scales.handle) for codes, scales in states]
  state_bytes = sum(c.shape.num_elements() * c.dtype.size + s.shape.num_elements() * s.dtype.size
                    for c, s in states)
  row_aligned_bytes = 2 * (size + 4 * rows * -(-width // BLOCK))

  def step(t):
    indices = (rng.zipf(1.2, size=batch) - 1) % rows
    grad = rng.normal(size=(batch, width)).astype(np.float32)
    beta1_power, beta2_power = 0.9 ** t, 0.999 ** t
    start = time.perf_counter()
    ops.resource_sparse_apply_adam_8bit(var.handle, *handles, beta1_power, beta2_power, 1e-3, 0.9,
                                        0.999, 1e-7, grad, indices.astype(np.int64), lazy=True)
    return indices, time.perf_counter() - start

  for t in range(1, 11):  # warm-up: states in the touched blocks
    step(t)
  times, flat_elements, aligned_elements, changed, drift = [], [], [], [], []
  for t in range(11, 11 + steps):
    m_codes_before = states[0][0].numpy().reshape(-1)
    m_scales_before = states[0][1].numpy()
    indices, seconds = step(t)
    named = np.unique(indices)
    touched = flat_blocks(named, width)
    times.append(seconds)
    flat_elements.append(min(len(touched) * BLOCK, size))
    aligned_elements.append(len(named) * width)
    # The neighbours: elements of the touched blocks outside the named rows.
    element_rows = (touched[:, None] * BLOCK + np.arange(BLOCK)).reshape(-1)
    element_rows = element_rows[element_rows < size]
    neighbours = element_rows[~np.isin(element_rows // width, named)]
    if neighbours.size:
      m_codes_after = states[0][0].numpy().reshape(-1)
      changed.append(np.mean(m_codes_before[neighbours] != m_codes_after[neighbours]))
      before = state_8bit.dequantize(m_codes_before, m_scales_before, True)[neighbours]
      after = state_8bit.dequantize(m_codes_after, states[0][1].numpy(), True)[neighbours]
      scale = np.repeat(m_scales_before, BLOCK)[:size][neighbours]
      drift.append(np.mean(np.abs(after - before) / np.where(scale > 0, scale, 1)))
  flat_ms = 1e3 * float(np.median(times))
  ratio = float(np.mean(aligned_elements) / np.mean(flat_elements))
  return {
      "width": width, "rows": rows,
      "bytes_per_parameter": {"flat": state_bytes / size, "row_aligned": row_aligned_bytes / size},
      "elements_per_step": {"flat": float(np.mean(flat_elements)),
                            "row_aligned": float(np.mean(aligned_elements))},
      "lazy_ms": {"flat": flat_ms, "row_aligned_predicted": flat_ms * ratio},
      "neighbour_codes_changed": float(np.mean(changed)) if changed else 0.0,
      "neighbour_drift_of_absmax": float(np.mean(drift)) if drift else 0.0,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 300, 1024])
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--batch", type=int, default=1024, help="named rows per step (Zipf, a=1.2)")
  parser.add_argument("--json", help="also write the results here")
  args = parser.parse_args()
  results = [measure(w, args.steps, args.batch) for w in args.widths]
  print("| row width | bytes/param flat | bytes/param row-aligned | elements per lazy step flat "
        "| row-aligned | lazy op ms flat | row-aligned (predicted) | neighbours' codes changed "
        "| their drift (of absmax) |")
  print("| " + " | ".join(["---"] * 9) + " |")
  for r in results:
    print(f"| {r['width']} | {r['bytes_per_parameter']['flat']:.3f} | "
          f"{r['bytes_per_parameter']['row_aligned']:.3f} | "
          f"{r['elements_per_step']['flat']:,.0f} | {r['elements_per_step']['row_aligned']:,.0f} | "
          f"{r['lazy_ms']['flat']:.2f} | {r['lazy_ms']['row_aligned_predicted']:.2f} | "
          f"{100 * r['neighbour_codes_changed']:.1f}% | {r['neighbour_drift_of_absmax']:.2e} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
