"""An independent NumPy reference of the 8-bit states (docs/state_8bit.md): bitsandbytes' dynamic
maps recomputed from their definition, block-wise encoding by exact nearest code, and the 8-bit
step as decode -> the float rule of numpy_reference -> encode.

Nothing here reads the library: the maps are rebuilt from bitsandbytes' create_dynamic_map as
published (float32 linspace, midpoints of consecutive boundaries, decades 10^-6 .. 10^0), the codes
are found by counting midpoints (np.searchsorted), not by the library's cell tables.
"""

import numpy as np

import numpy_reference

BLOCK = 256


def torch_linspace(start, end, steps):
  """torch.linspace in float32 as its CPU kernel computes it: a float32 step, then start + step * i
  for the first half and end - step * (steps - 1 - i) for the second, each with one rounding (a
  fused multiply-add; NumPy's linspace differs in the last place)."""
  start, end = np.float32(start), np.float32(end)
  step = np.float64((end - start) / np.float32(steps - 1))
  i = np.arange(steps)
  exact = np.where(i < steps // 2, np.float64(start) + step * i,
                   np.float64(end) - step * (steps - 1 - i))
  return exact.astype(np.float32)


def dynamic_map(signed):
  """bitsandbytes.functional.create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)."""
  values = []
  for i in range(7):
    items = 2 ** i + 1 if signed else 2 ** (i + 1) + 1
    boundaries = torch_linspace(0.1, 1, items)
    means = (boundaries[:-1] + boundaries[1:]) / np.float32(2)
    scaled = (np.float32(10.0 ** (i - 6)) * means).astype(np.float32)
    values += scaled.tolist()
    if signed:
      values += (-scaled).tolist()
  values += [0.0, 1.0]
  return np.array(sorted(values), np.float32)


SIGNED, UNSIGNED = dynamic_map(True), dynamic_map(False)


def midpoints(book):
  return (np.float32(0.5) * (book[:-1] + book[1:])).astype(np.float32)


def encode(x, book):
  """Flat x (float32 or float64) -> (uint8 codes, float32 absmax per block of 256)."""
  x = np.asarray(x).reshape(-1)
  c = x.dtype.type
  blocks = -(-x.size // BLOCK)
  codes = np.zeros(x.size, np.uint8)
  absmax = np.zeros(blocks, np.float32)
  mids = midpoints(book)
  for b in range(blocks):
    block = x[b * BLOCK:(b + 1) * BLOCK]
    with np.errstate(all="ignore"):
      largest = np.float32(np.max(np.abs(block))) if block.size else np.float32(0)
    if not np.all(np.isfinite(block)) or not np.isfinite(largest):
      absmax[b] = np.nan
      continue
    absmax[b] = largest
    if largest == 0:
      continue
    # Tiny (denormal) blocks are scaled by 2**64 first, exactly, so that 1 / absmax is finite.
    prescale = c(2.0**64) if largest < np.float32(2.0**-100) else c(1)
    normalized = (block * prescale * (c(1) / (c(largest) * prescale))).astype(np.float32)
    normalized = np.clip(normalized, -1, 1)
    codes[b * BLOCK:b * BLOCK + block.size] = np.searchsorted(mids, normalized, side="left")
  return codes, absmax


def decode(codes, absmax, book, dtype=np.float32):
  codes = np.asarray(codes).reshape(-1)
  scales = np.repeat(np.asarray(absmax, np.float32), BLOCK)[:codes.size]
  return book[codes].astype(dtype) * scales.astype(dtype)


class States:
  """m, v (and vhat) of one variable as codes and scales."""

  def __init__(self, size, amsgrad=False):
    blocks = -(-size // BLOCK)
    self.m = (np.zeros(size, np.uint8), np.zeros(blocks, np.float32))
    self.v = (np.zeros(size, np.uint8), np.zeros(blocks, np.float32))
    self.vhat = (np.zeros(size, np.uint8), np.zeros(blocks, np.float32)) if amsgrad else None

  def decoded(self, c):
    vhat = None if self.vhat is None else decode(*self.vhat, UNSIGNED, c)
    return decode(*self.m, SIGNED, c), decode(*self.v, UNSIGNED, c), vhat

  def store(self, m, v, vhat, blocks=None):
    """Encodes the new values; only the blocks named in `blocks` (all when None)."""
    def kept(old, new):
      if blocks is None:
        return new
      codes, absmax = old[0].copy(), old[1].copy()
      for b in blocks:
        codes[b * BLOCK:(b + 1) * BLOCK] = new[0][b * BLOCK:(b + 1) * BLOCK]
        absmax[b] = new[1][b]
      return codes, absmax
    self.m = kept(self.m, encode(m, SIGNED))
    self.v = kept(self.v, encode(v, UNSIGNED))
    if vhat is not None:
      self.vhat = kept(self.vhat, encode(vhat, UNSIGNED))


def step(var, states, grad, beta1_power, beta2_power, lr, beta1, beta2, epsilon, **options):
  """One dense 8-bit step: var's new value; `states` updated in place. `options` are
  numpy_reference.variant_step's (weight_decay, times_lr, use_nesterov)."""
  c = numpy_reference.compute_dtype(var.dtype)
  m, v, vhat = states.decoded(c)
  shape = var.shape
  new_var, m, v, vhat = numpy_reference.variant_step(
      var.reshape(-1), m, v, vhat, grad.reshape(-1), beta1_power, beta2_power, lr, beta1, beta2,
      epsilon, **options)
  states.store(m, v, vhat)
  return new_var.reshape(shape)


def sparse_step(var, states, grad, indices, beta1_power, beta2_power, lr, beta1, beta2, epsilon,
                lazy=False, **options):
  """One sparse 8-bit step (stock's sparse rule, or lazy): every block is re-encoded from its
  decoded values, the updated elements' new ones and the others' as they were."""
  c = numpy_reference.compute_dtype(var.dtype)
  rows = var.shape[0]
  m, v, vhat = (None if x is None else x.reshape(rows, -1) for x in states.decoded(c))
  new_var, m, v, vhat = numpy_reference.sparse_variant_step(
      var.reshape(rows, -1), m, v, vhat, grad.reshape(len(indices), -1), indices, beta1_power,
      beta2_power, lr, beta1, beta2, epsilon, lazy=lazy, **options)
  blocks = None
  if lazy:  # the blocks holding an element of a named row
    width = var.size // rows
    blocks = sorted({e // BLOCK for r in set(np.asarray(indices).tolist())
                     for e in range(r * width, (r + 1) * width)})
  states.store(m.reshape(-1), v.reshape(-1), None if vhat is None else vhat.reshape(-1), blocks)
  return new_var.reshape(var.shape)
