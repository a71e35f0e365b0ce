"""Which variables get 8-bit states: the optimizers' `state_bits` and `min_8bit_size` options."""

import numbers

import tensorflow as tf

# bitsandbytes' default: smaller variables keep float32 states (their scales would cost more
# than the codes save, and biases and norms are where 8-bit states hurt most).
DEFAULT_MIN_8BIT_SIZE = 4096
_8BIT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def check_options(state_bits, min_8bit_size, who):
  """The options as ints; a ValueError naming what is wrong otherwise."""
  if (isinstance(state_bits, bool) or not isinstance(state_bits, numbers.Integral)
      or state_bits not in (8, 32)):
    raise ValueError(f"{who}: state_bits must be 32 (float32 states) or 8, got {state_bits!r}")
  if (isinstance(min_8bit_size, bool) or not isinstance(min_8bit_size, numbers.Integral)
      or min_8bit_size < 0):
    raise ValueError(f"{who}: min_8bit_size must be an int >= 0, got {min_8bit_size!r}")
  return int(state_bits), int(min_8bit_size)


def uses_8bit(var, state_bits=8, min_8bit_size=DEFAULT_MIN_8BIT_SIZE):
  """Whether `var` gets 8-bit states: state_bits=8, a floating dtype the 8-bit ops take and a fully
  known shape of at least min_8bit_size elements (bitsandbytes' rule). `var` is a TF variable or a
  Keras 3 one (whose dtype is a name and shape a tuple)."""
  if state_bits != 8:
    return False
  shape = tf.TensorShape(var.shape)
  return (tf.as_dtype(var.dtype).base_dtype in _8BIT_DTYPES and shape.is_fully_defined()
          and shape.num_elements() >= min_8bit_size)
