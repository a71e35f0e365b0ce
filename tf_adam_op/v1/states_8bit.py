"""AdamOptimizer's 8-bit states (state_bits=8, tf_adam_op.state_8bit): their slots and updates.

Mixed into AdamOptimizer; `_scalars`, `_checked_scalars`, `_this_step`, `_decays`, `_amsgrad`,
`_use_locking` and the slot methods are AdamOptimizer's. A variable with 8-bit states has the
slots m_codes, m_absmax, v_codes, v_absmax (and vhat_codes, vhat_absmax with AMSGrad) instead of
m and v (vhat): uint8 codes of the variable's shape, float32 scales of ceil(size / 256). Its
updates are the 8-bit ops: on the fast path one multi-tensor op per group (_apply_8bit_group), on
the general path one op each, made where the base class asks for them; never grouped with float
states.
"""

import contextlib

import tensorflow as tf

from tensorflow.python.framework import ops as framework_ops

from tf_adam_op._step import apply
from tf_adam_op._step import checks
from tf_adam_op._step import grouping
from tf_adam_op._step import xla
from tf_adam_op.state_8bit import choice
from tf_adam_op.state_8bit import codec

_STATES = ("m", "v", "vhat")
# slot name -> (var -> the slot's shape and dtype): codes of var's shape, one scale per block.
_8BIT_SLOTS = {
    **{f"{name}_codes": lambda var: (var.shape, tf.uint8) for name in _STATES},
    **{f"{name}_absmax": lambda var: (
        tf.TensorShape([-(-var.shape.num_elements() // codec.BLOCK_SIZE)]), tf.float32)
       for name in _STATES}}


class EightBitStates:
  """The 8-bit half of AdamOptimizer's state and updates."""

  def _has_8bit_states(self, var):
    return choice.uses_8bit(var, self._state_bits, self._min_8bit_size)

  def _create_or_restore_slot_variable(self, slot_variable_position, slot_name, variable):
    """A checkpoint's slot, restored as the base class restores it, unless it holds the other kind
    of state for `variable` (float m and v where this optimizer keeps 8-bit states, or codes and
    scales where it keeps float ones): then a ValueError, before the slot is made. TensorFlow
    would make it as a slot that no step reads, and the moments would start from zero, silently
    (an outside check). copy_states converts (docs/state_8bit.md)."""
    keeps_8bit = self._has_8bit_states(variable)
    other_kind = slot_name in (*_STATES, *_8BIT_SLOTS) and (slot_name in _8BIT_SLOTS) != keeps_8bit
    # An optimizer loaded from a SavedModel holds whatever its saved steps use (saved_model.py).
    if other_kind and not getattr(self, "_holds_loaded_states", False):
      kinds = ("float32", "8-bit") if keeps_8bit else ("8-bit", "float32")
      raise ValueError(
          f"{self._who()}: the checkpoint holds {kinds[0]} states for {variable.name!r} (slot "
          f"{slot_name!r}), but this optimizer keeps {kinds[1]} states for it (state_bits="
          f"{self._state_bits}, min_8bit_size={self._min_8bit_size}): restore the checkpoint into "
          "an optimizer with its state_bits and move the states with "
          "tf_adam_op.state_8bit.copy_states (docs/state_8bit.md, Converting)")
    return super()._create_or_restore_slot_variable(slot_variable_position, slot_name, variable)

  def _state_names(self):
    return _STATES if self._amsgrad else _STATES[:2]

  def _create_8bit_slots(self, var):
    if var.dtype._is_ref_dtype:  # (a distributed variable's .handle raises: not asked)
      raise ValueError(
          f"{self._who()}: state_bits=8 needs resource variables; {var.name!r} is a ref variable "
          "(tf.compat.v1 variables with use_resource=False): create it with use_resource=True, "
          "or give this optimizer min_8bit_size larger than it")
    for name in self._state_names():
      for part in ("codes", "absmax"):
        slot = self._get_or_make_slot_with_initializer(var, tf.zeros_initializer(), var.shape,
                                                       var.dtype, f"{name}_{part}", self._name)
        if part == "absmax":
          self._scale_slots.setdefault(var.ref(), {})[name] = slot

  def _get_or_make_slot_with_initializer(self, var, initializer, shape, dtype, slot_name, op_name):
    """The base class's, with an 8-bit slot's own shape and dtype whoever asks for it: our slot
    creation, and the base class's restore-on-create of a checkpoint (which asks for var's shape
    and dtype, as for every slot of stock's)."""
    spec = _8BIT_SLOTS.get(slot_name)
    if spec is not None:
      shape, dtype = spec(var)
    return super()._get_or_make_slot_with_initializer(var, initializer, shape, dtype, slot_name,
                                                      op_name)

  def build(self, var_list):
    """Creates the optimizer's slots (and beta powers) for `var_list` now, as its first step would:
    for moving states into it (tf_adam_op.state_8bit.copy_states) before it steps. Variables of a
    tf.distribute strategy get them in its scope, mirrored as a step makes them, wherever this is
    called (outside the scope the slots were plain variables on one device, and the next step
    failed to place its ops: an outside check)."""
    var_list = list(var_list)
    strategy = next((var.distribute_strategy for var in var_list
                     if isinstance(var, tf.distribute.DistributedValues)), None)
    in_scope = (strategy.scope() if strategy is not None and not tf.distribute.has_strategy()
                else contextlib.nullcontext())
    with in_scope, framework_ops.init_scope():
      self._create_slots(var_list)

  def _create_8bit_slots_first(self, variables):
    """The base class's first act, the slots, made ahead of the step's scale checks when a variable
    has 8-bit states (their scales must exist to be checked)."""
    if any(map(self._has_8bit_states, variables)):
      with framework_ops.init_scope():
        self._create_slots(list(variables))

  def _scale_guards(self, variables):
    """checks.scale_guards over the 8-bit states these variables have already. The scales are
    found by the variable itself (recorded when its slots were made): in a function under a
    strategy, the base class's get_slot keys a mirrored variable by an op of that graph and finds
    none in the cross-replica context where the step is built."""
    # Named with the state (the slots' own names are stock's numbered ones: var/Adam_3).
    named = [(f"{var.name} {state}_absmax", scales) for var in variables
             if self._has_8bit_states(var)
             for state, scales in self._scale_slots.get(var.ref(), {}).items()]
    # Under XLA, as data the step's updates take (apply.after_check; cleared by _step_built).
    self._this_step.scales_checked = checks.xla_scale_check(named, self._who())
    return checks.scale_guards(named, self._who(), pack=self._packed_scales)

  def _packed_scales(self, scale_variables):
    """The handle vector of these scale variables, packed once per list (_step/packed.py)."""
    with self._state_lock:
      return self._packed_handles.vectors(scale_variables, lambda: [scale_variables])[0]

  def _8bit_pairs(self, var):
    """(codes, absmax) handle pairs of m, v and vhat (None without AMSGrad)."""
    pairs = [(self.get_slot(var, f"{name}_codes").handle, self.get_slot(var, f"{name}_absmax").handle)
             for name in self._state_names()]
    return pairs[0], pairs[1], (pairs[2] if self._amsgrad else None)

  def _apply_8bit_dense(self, grad, var):
    xla.check_8bit_usable(var, self._who())
    m, v, vhat = self._8bit_pairs(var)
    return apply.dense_8bit(var.handle, m, v, self._checked_scalars(var.dtype), grad,
                            vhat_states=vhat, decays=self._decays(var),
                            use_locking=self._use_locking)

  def _apply_8bit_group(self, group, grads):
    """The op of a planned group of variables with 8-bit states (the fast path's): one
    ResourceApplyAdam8bitMulti, or under XLA (which reads no vector of handles) one
    ResourceApplyAdam8bitMultiUnpacked, after the step's scale check."""
    if group.states is None:  # the slots, looked up once per plan (a lookup costs an eager step)
      group.states = tuple([self.get_slot(v, f"{name}_{part}") for v in group.variables]
                           for name in self._state_names() for part in ("codes", "absmax"))
      group.names = [repr(var.name) for var in group.variables]  # for the op's errors
    if xla.in_xla_context():
      for var in group.variables:
        xla.check_8bit_usable(var, self._who())
      handle_lists = [[v.handle for v in variables]
                      for variables in (group.variables, *group.states)]
      with tf.device(group.device):
        return [apply.group_8bit(handle_lists, self._checked_scalars(group.dtype), grads,
                                 decays=group.decays, use_locking=self._use_locking,
                                 variable_names=group.names, unpacked=True)]
    with self._state_lock:  # packed once per variable list (_step/packed.py)
      handles = self._packed_handles.vectors(group.variables,
                                             lambda: [group.variables, *group.states])
    with tf.device(group.device):
      return [apply.group_8bit(handles, self._scalars(group.dtype), grads, decays=group.decays,
                               use_locking=self._use_locking, variable_names=group.names)]

  def _apply_8bit_held_back(self, pairs, other_updates):
    """On the general path (TF1 sessions, steps with IndexedSlices, XLA): the dense (grad, var)
    pairs with 8-bit states held back to _finish (paths.held_8bit_for_finish), one op per (device,
    dtype, decays) group (_apply_8bit_group). Under XLA each gradient is made to depend by data on
    `other_updates` (the step's sparse ones), so that a sparse update that fails while it runs (an
    index out of range) stops the step before these are written; elsewhere the step's checks come
    first (eagerly, or as the control dependencies of every op of the step)."""
    after_others = (xla.after_updates(other_updates) if xla.in_xla_context()
                    else lambda *grads: grads)
    ops = []
    for group in grouping.group_updates(pairs, self._decays):
      group.states = None  # (looked up by _apply_8bit_group)
      ops += self._apply_8bit_group(group, list(after_others(*group.items)))
    return ops

  def _apply_8bit_sparse(self, values, var, indices):
    xla.check_8bit_usable(var, self._who())
    m, v, vhat = self._8bit_pairs(var)
    return apply.sparse_8bit(var.handle, m, v, self._checked_scalars(var.dtype), values, indices,
                             vhat_states=vhat, decays=self._decays(var),
                             use_locking=self._use_locking, lazy=self._lazy)

  def state_variables(self, var):
    """{"m", "v" (, "vhat")} -> var's slot variable, or its (codes, absmax) pair with 8-bit states;
    None before the optimizer has slots for var (tf_adam_op.state_8bit's converters use this)."""
    if self._has_8bit_states(var):
      if self.get_slot(var, "m_codes") is None:
        return None
      return {name: (self.get_slot(var, f"{name}_codes"), self.get_slot(var, f"{name}_absmax"))
              for name in self._state_names()}
    if self.get_slot(var, "m") is None:
      return None
    return {name: self.get_slot(var, name) for name in self._state_names()}
