"""What tf.saved_model needs of a v1 optimizer: its packed handle vectors saved, and a loaded one
that re-creates its slots."""

import tensorflow as tf
from tensorflow.python.trackable import base as trackable


# The lists a group's packed vectors hold: float states (3, or 4 with AMSGrad), 8-bit states (5 or 7).
_LIST_NAMES = ("vars", "ms", "vs", "vhats")
_8BIT_LIST_NAMES = ("vars", "m_codes", "m_absmax", "v_codes", "v_absmax", "vhat_codes",
                    "vhat_absmax")


class SavedModelSupport:
  """Mixed into AdamOptimizer (which has `_packed_handles`, a _step/packed.PackedHandleCache)."""

  @classmethod
  def _deserialize_from_proto(cls, **kwargs):
    """The loaded optimizer: the state holder of the loaded train steps (their hyperparameters are
    in the saved functions), default hyperparameters for anything new. It holds the slots the
    saved steps use, whichever kind of states they are (its own state_bits is the default's)."""
    return cls._holding_loaded_states(cls())

  @staticmethod
  def _holding_loaded_states(optimizer):
    """`optimizer`, marked as a loaded one: its restore takes either kind of states
    (states_8bit.py), those its saved steps use."""
    optimizer._holds_loaded_states = True
    return optimizer

  def add_slot(self, var, slot_name):
    """Creates slot `slot_name` ("m", "v", "vhat", or an 8-bit state's codes or scales) for `var`,
    zeros of the slot's shape and dtype; tf.saved_model.load restores it."""
    return self._get_or_make_slot_with_initializer(var, tf.zeros_initializer(), var.shape,
                                                   var.dtype, slot_name, self._name)

  def _trackable_children(self, save_type=trackable.SaveType.CHECKPOINT, **kwargs):
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == trackable.SaveType.SAVEDMODEL:
      # The packed handle vectors that saved functions capture; checkpoints never see them.
      # A loaded optimizer already has the vectors of its loaded steps as children: new ones are
      # numbered after them.
      first = sum(name.startswith("packed_handles_") and name.endswith("_vars")
                  for name in children)
      for i, resources in enumerate(self._packed_handles.resources(), start=first):
        names = _LIST_NAMES if len(resources) <= len(_LIST_NAMES) else _8BIT_LIST_NAMES
        for name, resource in zip(names, resources):
          children[f"packed_handles_{i}_{name}"] = resource
    return children
