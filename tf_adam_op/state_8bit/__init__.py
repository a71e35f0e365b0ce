"""8-bit optimizer states (docs/state_8bit.md): m and v kept as uint8 codes with one float32 scale
per block of 256 elements, bitsandbytes' block-wise scheme and dynamic maps.

Turned on with `state_bits=8` on tf_adam_op.AdamOptimizer, AdamWOptimizer and tf_adam_op.keras.Adam,
AdamW. What is here: which variables get 8-bit states (`uses_8bit`), the codec on NumPy arrays
(`quantize`, `dequantize`, the kernels' own encoder), and moving states between optimizers and to
and from bitsandbytes (`copy_states`, `to_bitsandbytes`, `from_bitsandbytes`).
"""

from tf_adam_op.state_8bit.choice import DEFAULT_MIN_8BIT_SIZE
from tf_adam_op.state_8bit.choice import uses_8bit
from tf_adam_op.state_8bit.codec import BLOCK_SIZE
from tf_adam_op.state_8bit.codec import dequantize
from tf_adam_op.state_8bit.codec import dynamic_map
from tf_adam_op.state_8bit.codec import quantize
from tf_adam_op.state_8bit.convert import copy_states
from tf_adam_op.state_8bit.convert import from_bitsandbytes
from tf_adam_op.state_8bit.convert import state_values
from tf_adam_op.state_8bit.convert import to_bitsandbytes

__all__ = ["BLOCK_SIZE", "DEFAULT_MIN_8BIT_SIZE", "copy_states", "dequantize", "dynamic_map",
           "from_bitsandbytes", "quantize", "state_values", "to_bitsandbytes", "uses_8bit"]
