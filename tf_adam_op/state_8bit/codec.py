"""The 8-bit states' codec on NumPy arrays: the kernels' own maps and encoder (tf_adam_op._core),
so a state converted here is the state a step would have written."""

import numpy as np

from tf_adam_op import _core

BLOCK_SIZE = 256


def dynamic_map(signed):
  """bitsandbytes' dynamic map (signed: m's; unsigned: v's and vhat's), 256 float32 values."""
  return _core.dynamic_map(bool(signed))


def quantize(x, signed):
  """x (any shape) -> (uint8 codes of x's shape, float32 absmax per block of 256 flat elements).
  A float64 x is encoded as the kernels encode a float64 variable's states (in float64, the absmax
  rounded to float32); anything else as float32, the arithmetic of every other variable's."""
  x = np.asarray(x)
  if not signed and np.any(x < 0):
    raise ValueError("unsigned states (v, vhat) cannot hold negative values; quantize them with "
                     "signed=True, or check where they came from")
  if x.dtype == np.float64:
    codes, absmax = _core.quantize_blockwise_float64(x.reshape(-1), bool(signed))
  else:
    codes, absmax = _core.quantize_blockwise(x.astype(np.float32).reshape(-1), bool(signed))
  return codes.reshape(x.shape), absmax


def dequantize(codes, absmax, signed, dtype=np.float32):
  """(codes, absmax) -> the values they stand for, of codes' shape: map[code] * absmax[block],
  computed in `dtype` (the kernels: float64 for a float64 variable's states, float32 otherwise)."""
  codes = np.asarray(codes)
  scales = np.repeat(np.asarray(absmax, np.float32), BLOCK_SIZE)[:codes.size]
  values = dynamic_map(signed)[codes.reshape(-1)].astype(dtype) * scales.astype(dtype)
  return values.reshape(codes.shape)
