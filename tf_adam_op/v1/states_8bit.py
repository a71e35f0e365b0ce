"""AdamOptimizer's 8-bit states (state_bits=8, tf_adam_op.state_8bit): their slots and updates.

Mixed into AdamOptimizer; `_scalars`, `_decays`, `_amsgrad`, `_use_locking` and the slot methods
are AdamOptimizer's. A variable with 8-bit states has the slots m_codes, m_absmax, v_codes,
v_absmax (and vhat_codes, vhat_absmax with AMSGrad) instead of m and v (vhat): uint8 codes of the
variable's shape, float32 scales of ceil(size / 256). Its updates are one 8-bit op each, made where
the base class asks for them (never grouped into the multi-tensor ops).
"""

import tensorflow as tf

from tf_adam_op._step import apply
from tf_adam_op._step import xla
from tf_adam_op.state_8bit import choice
from tf_adam_op.state_8bit import codec

_STATES = ("m", "v", "vhat")


class EightBitStates:
  """The 8-bit half of AdamOptimizer's state and updates."""

  def _has_8bit_states(self, var):
    return choice.uses_8bit(var, self._state_bits, self._min_8bit_size)

  def _state_names(self):
    return _STATES if self._amsgrad else _STATES[:2]

  def _create_8bit_slots(self, var):
    if not hasattr(var, "handle") or var.dtype._is_ref_dtype:
      raise ValueError(
          f"{self._who()}: state_bits=8 needs resource variables; {var.name!r} is a ref variable "
          "(tf.compat.v1 variables with use_resource=False): create it with use_resource=True, "
          "or give this optimizer min_8bit_size larger than it")
    blocks = -(-var.shape.num_elements() // codec.BLOCK_SIZE)
    for name in self._state_names():
      self._get_or_make_slot_with_initializer(var, tf.zeros_initializer(), var.shape, tf.uint8,
                                              f"{name}_codes", self._name)
      self._get_or_make_slot_with_initializer(var, tf.zeros_initializer(), tf.TensorShape([blocks]),
                                              tf.float32, f"{name}_absmax", self._name)

  def _8bit_pairs(self, var):
    """(codes, absmax) handle pairs of m, v and vhat (None without AMSGrad)."""
    pairs = [(self.get_slot(var, f"{name}_codes").handle, self.get_slot(var, f"{name}_absmax").handle)
             for name in self._state_names()]
    return pairs[0], pairs[1], (pairs[2] if self._amsgrad else None)

  def _apply_8bit_dense(self, grad, var):
    xla.check_8bit_usable(var, self._who())
    m, v, vhat = self._8bit_pairs(var)
    return apply.dense_8bit(var.handle, m, v, self._scalars(var.dtype), grad, vhat_states=vhat,
                            decays=self._decays(var), use_locking=self._use_locking)

  def _apply_8bit_group(self, group, grads):
    """The ops of a planned group of variables with 8-bit states (the fast path's): one
    ResourceApplyAdam8bitMulti, or under XLA (whose kernels are the single-variable op's) one op
    per variable."""
    if xla.in_xla_context():
      return [self._apply_8bit_dense(grad, var) for grad, var in zip(grads, group.variables)]
    handles = [[v.handle for v in group.variables]] + [
        [self.get_slot(v, f"{name}_{part}").handle for v in group.variables]
        for name in self._state_names() for part in ("codes", "absmax")]
    with tf.device(group.device):
      return [apply.group_8bit(handles, self._scalars(group.dtype), grads, decays=group.decays,
                               use_locking=self._use_locking)]

  def _apply_8bit_sparse(self, values, var, indices):
    xla.check_8bit_usable(var, self._who())
    m, v, vhat = self._8bit_pairs(var)
    return apply.sparse_8bit(var.handle, m, v, self._scalars(var.dtype), values, indices,
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
