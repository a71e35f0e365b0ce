"""Moving optimizer states between float32 and 8-bit, between optimizers, and to and from
bitsandbytes. Both optimizer families say where a variable's states are with
`state_variables(var)`: {"m", "v" (, "vhat")} -> a float variable, or a (codes, absmax) pair."""

import numpy as np

from tf_adam_op import ops
from tf_adam_op.state_8bit import codec

_SIGNED = {"m": True, "v": False, "vhat": False}


def _states(optimizer, var):
  states = optimizer.state_variables(var)
  if states is None:
    raise ValueError(f"{type(optimizer).__name__} has no states for {var.name!r} yet: build the "
                     "optimizer first (optimizer.build(variables), both families)")
  return states


def state_values(optimizer, var):
  """{"m", "v" (, "vhat")} -> var's states as NumPy arrays of var's shape: float states as they are
  kept (float64 slots for a float64 variable, as stock's), 8-bit ones decoded as a step decodes
  them (in float64 for a float64 variable, in float32 otherwise)."""
  decode_dtype = ops.compute_dtype(var.dtype).as_numpy_dtype  # the kernels' arithmetic
  values = {}
  for name, state in _states(optimizer, var).items():
    if isinstance(state, tuple):
      values[name] = codec.dequantize(state[0].numpy(), state[1].numpy(), _SIGNED[name],
                                      dtype=decode_dtype)
    else:
      values[name] = state.numpy()
  return values


def _assign(state, value, signed):
  if isinstance(state, tuple):
    codes, absmax = codec.quantize(value, signed)
    state[0].assign(codes.reshape(state[0].shape))
    state[1].assign(absmax)
  else:
    state.assign(np.asarray(value).astype(state.dtype.as_numpy_dtype).reshape(state.shape))


def copy_states(source, target, var_list):
  """Gives `target` the states `source` has for each variable of var_list, converted between
  float32 and 8-bit as the two optimizers keep them (the beta powers and `iterations` are not
  states: restore or copy those as usual). E.g. restore a float32-state checkpoint into a
  state_bits=32 optimizer, then copy_states into a state_bits=8 one; and back. Between two 8-bit
  states the codes and scales are copied as they are: decoding and encoding again would shrink the
  scale of an m block whose largest magnitude is negative (the signed map has no -1)."""
  for var in var_list:
    sources = _states(source, var)
    values = state_values(source, var)
    for name, state in _states(target, var).items():
      if name not in values:
        raise ValueError(f"{type(source).__name__} has no {name!r} state for {var.name!r}: "
                         "AMSGrad's vhat needs amsgrad=True on both optimizers")
      if isinstance(state, tuple) and isinstance(sources[name], tuple):
        for target_part, source_part in zip(state, sources[name]):
          target_part.assign(source_part.read_value())
      else:
        _assign(state, values[name], _SIGNED[name])


def to_bitsandbytes(optimizer, var):
  """var's states as a bitsandbytes Adam8bit state dict of NumPy arrays: state1, absmax1 (m),
  state2, absmax2 (v) for 8-bit states, float32 state1, state2 for small variables (bitsandbytes
  keeps those in float32 too). Convert with torch.from_numpy; `step` and the maps are bitsandbytes'
  own (its qmap1/qmap2 are the maps used here)."""
  states = _states(optimizer, var)
  result = {}
  for number, name in ((1, "m"), (2, "v")):
    state = states[name]
    if isinstance(state, tuple):
      result[f"state{number}"] = state[0].numpy()
      result[f"absmax{number}"] = state[1].numpy()
    else:
      result[f"state{number}"] = state.numpy().astype(np.float32)
  return result


def from_bitsandbytes(optimizer, var, state):
  """Loads a bitsandbytes Adam8bit/Adam state of one parameter (its state1/state2, and
  absmax1/absmax2 when 8-bit; NumPy arrays or CPU torch tensors) as var's m and v: codes and
  scales are taken as they are when both sides are 8-bit (the same layout and maps), converted
  otherwise."""
  as_numpy = lambda x: x.numpy() if hasattr(x, "numpy") else np.asarray(x)
  states = _states(optimizer, var)
  for number, name in ((1, "m"), (2, "v")):
    codes_or_values = as_numpy(state[f"state{number}"])
    target = states[name]
    if codes_or_values.dtype == np.uint8:
      absmax = as_numpy(state[f"absmax{number}"])
      if isinstance(target, tuple):
        target[0].assign(codes_or_values.reshape(target[0].shape))
        target[1].assign(absmax)
        continue
      codes_or_values = codec.dequantize(codes_or_values, absmax, _SIGNED[name])
    _assign(target, codes_or_values, _SIGNED[name])
