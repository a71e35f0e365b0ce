"""tf_adam_op.keras's 8-bit states (state_bits=8, tf_adam_op.state_8bit): their variables and
updates. Mixed into the Keras optimizers; `state_bits`, `min_8bit_size`, `_8bit_scales`,
`_8bit_scales_of`, `_building_step`, `_checked_scalars`, `lazy`, `amsgrad` and the slot lists
are the optimizer's.

Keras creates an optimizer's states through add_variable_from_reference (per variable and name:
momentum, velocity, velocity_hat). For a variable with 8-bit states that makes the codes
(`<var>_<name>_codes`, uint8, the variable's shape) and, beside them, their scales
(`<var>_<name>_absmax`, float32, one per block of 256): Keras's own lists (_momentums, ...) then
hold the codes where they held the float state, and everything that walks them (saving, EMA,
`variables`) keeps working.
"""

import operator

import tensorflow as tf

from tf_adam_op._step import apply
from tf_adam_op._step import checks
from tf_adam_op._step import grouping
from tf_adam_op._step import packed
from tf_adam_op._step import xla
from tf_adam_op.keras import _decisions
from tf_adam_op.keras import _inputs
from tf_adam_op.state_8bit import choice
from tf_adam_op.state_8bit import codec

_STATE_NAMES = {"momentum": "m", "velocity": "v", "velocity_hat": "vhat"}


class _ScaleCheck:
  """The scales of a variable list's 8-bit states, named for the check's message, and their
  handles packed once (checks.scale_guards' `pack`); a function being traced captures the packed
  vector, which tf.saved_model must then find tracked (the optimizer's _traced_packed)."""

  def __init__(self, optimizer, keras_variables):
    self.variables = tuple(keras_variables)
    pairs = [(_decisions.error_name(keras_var), keras_pair[1], tf_pair[1])
             for keras_var in keras_variables
             if optimizer._has_8bit_states(keras_var)
             for keras_pair, tf_pair in zip(optimizer._keras_8bit_pairs(keras_var),
                                            optimizer._8bit_pairs(keras_var))
             if keras_pair is not None]
    self.named = [(name, scales) for name, _, scales in pairs]
    self._tracked = [keras_scales for _, keras_scales, _ in pairs]
    self._traced = optimizer._traced_packed
    self._packed = self._vector = None

  def pack(self, scale_variables):
    if self._vector is None:
      self._packed, (self._vector,) = packed.pack_eager(
          [scale_variables], grouping.host_device(scale_variables[0].device), [self._tracked])
    if not tf.executing_eagerly():
      self._traced.keep(self._packed)
    return self._vector


class EightBitStates:
  """The 8-bit half of the Keras optimizers' state and updates."""

  def _has_8bit_states(self, var):
    return choice.uses_8bit(_decisions.tf_variable(var), self.state_bits, self.min_8bit_size)

  def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
    if name not in _STATE_NAMES or not self._has_8bit_states(reference_variable):
      return super().add_variable_from_reference(reference_variable, name=name,
                                                 initializer=initializer)
    prefix = (reference_variable.path.replace("/", "_") if hasattr(reference_variable, "path")
              else str(reference_variable.name).replace("/", "_").replace(":", "_"))
    shape = tuple(reference_variable.shape)
    blocks = -(-int(tf.TensorShape(shape).num_elements()) // codec.BLOCK_SIZE)
    codes = self.add_variable(shape=shape, initializer="zeros", dtype="uint8",
                              name=f"{prefix}_{name}_codes")
    self._8bit_scales[id(codes)] = self.add_variable(
        shape=(blocks,), initializer="zeros", dtype="float32", name=f"{prefix}_{name}_absmax")
    return codes

  def _keras_8bit_pairs(self, keras_var):
    """(codes, absmax) Keras variable pairs of m, v and vhat (None without AMSGrad)."""
    pairs = tuple((codes, self._8bit_scales[id(codes)]) if codes is not None else None
                  for codes in self._state_lists(keras_var))
    return pairs + (None,) * (3 - len(pairs))

  def _8bit_pairs(self, keras_var):
    """The same pairs as tf.Variables."""
    tf_variable = _decisions.tf_variable
    return tuple(None if pair is None else (tf_variable(pair[0]), tf_variable(pair[1]))
                 for pair in self._keras_8bit_pairs(keras_var))

  def _state_lists(self, keras_var):
    index = self._get_variable_index(keras_var)
    lists = [self._momentums, self._velocities] + ([self._velocity_hats] if self.amsgrad else [])
    return [states[index] for states in lists]

  def _update_8bit(self, grad, keras_var, learning_rate, decays):
    var = _decisions.tf_variable(keras_var)
    xla.check_8bit_usable(var, "tf_adam_op.keras")
    dtype = var.dtype.base_dtype
    handles = [None if pair is None else (pair[0].handle, pair[1].handle)
               for pair in self._8bit_pairs(keras_var)]
    scalars = self._checked_scalars(dtype, learning_rate, decays)
    if isinstance(grad, tf.IndexedSlices):
      grad = self._rows_of_rule(grad, var)  # (adam.py: Keras's kept rows, or lazy rows)
      values = tf.cast(grad.values, dtype)  # Keras casts the gradient to the variable's dtype
      return apply.sparse_8bit(var.handle, handles[0], handles[1], scalars, values, grad.indices,
                               vhat_states=handles[2], decays=decays, lazy=self.lazy,
                               dense_rule=True)
    return apply.dense_8bit(var.handle, handles[0], handles[1], scalars,
                            _inputs.as_dtype(grad, dtype), vhat_states=handles[2], decays=decays)

  def _update_8bit_group(self, group, grads, learning_rate):
    """One ResourceApplyAdam8bitMulti over a planned group (_plan.make_plan's groups_8bit), with
    the group's packed handle vectors."""
    scalars = _inputs.step_scalars(self, group.dtype, learning_rate, group.decays)
    with tf.device(group.device):
      return apply.group_8bit(group.handles, scalars,
                              [_inputs.as_dtype(g, group.dtype) for g in grads],
                              decays=group.decays, variable_names=group.names)

  def _scale_guards(self, keras_variables):
    """checks.scale_guards over the 8-bit states of these variables (built: Keras builds the
    optimizer before it applies gradients)."""
    if self.state_bits != 8 or not self.built:
      return []
    # The scales of a variable list, found once (an eager step would spend more on finding them
    # than on the check), and used while the same variables come back.
    key = tuple(map(id, keras_variables))
    known = self._8bit_scales_of.get(key)
    if known is None or not all(map(operator.is_, known.variables, keras_variables)):
      known = self._8bit_scales_of.put(key, _ScaleCheck(self, keras_variables))
    # Under XLA, as data the step's updates take (cleared when the step is built).
    self._building_step.scales_checked = checks.xla_scale_check(known.named, "tf_adam_op.keras")
    return checks.scale_guards(known.named, "tf_adam_op.keras", pack=known.pack)


  def state_variables(self, var):
    """{"m", "v" (, "vhat")} -> var's state tf.Variable, or its (codes, absmax) pair with 8-bit
    states; None before the optimizer is built for var, or for a variable it does not update
    (tf_adam_op.state_8bit's converters)."""
    if not self.built or self._var_key(var) not in self._trainable_variables_indices:
      return None
    names = ("m", "v", "vhat")
    if self._has_8bit_states(var):
      return {name: pair for name, pair in zip(names, self._8bit_pairs(var)) if pair is not None}
    return {name: _decisions.tf_variable(state)
            for name, state in zip(names, self._state_lists(var)) if state is not None}
