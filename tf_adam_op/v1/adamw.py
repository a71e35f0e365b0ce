"""tf_adam_op.AdamWOptimizer: TF1 contrib's AdamWOptimizer (Loshchilov & Hutter) on the fused ops.

tf.contrib.opt.AdamWOptimizer and TF Addons' AdamW are gone for TF 2.21; this is their TF1
semantics: before each Adam step the variable decays, var -= weight_decay * var (weight_decay is
not multiplied by the learning rate), for the variables in `decay_var_list` (all of them when it is
None or empty). Contrib composed that from an assign_sub before the Adam op; here the decay is one
more input of the fused ops, applied to var in the same pass, which gives contrib's numbers
(bit-identical in float32/float64: the same two roundings) without a second pass over memory.

For sparse gradients only the rows in the batch decay, once each however often an index repeats,
as in contrib and TF Addons (which decayed the deduplicated rows with a gather, a multiply and a
scatter_add before the update).
"""

import contextlib

from tensorflow.python.distribute import distribute_utils
from tensorflow.python.saved_model import registration

from tf_adam_op.state_8bit import choice as state_8bit_choice
from tf_adam_op.v1.optimizer import AdamOptimizer

__all__ = ["AdamWOptimizer"]


def _variable_set(variables):
  """The variables of a decay_var_list by identity (TF2 variables compare elementwise with ==)."""
  return None if not variables else {v.ref() for v in variables}


@registration.register_serializable(package="tf_adam_op")
class AdamWOptimizer(AdamOptimizer):
  """Adam with decoupled weight decay, TF1 contrib's AdamWOptimizer on the fused ops.

  Args:
    weight_decay: The decay per step, var -= weight_decay * var: a float, a scalar Tensor (e.g. a
      schedule on global_step in a TF1 graph) or, in eager mode, a callable re-evaluated each step.
    learning_rate, beta1, beta2, epsilon, use_locking, name: As AdamOptimizer (name "AdamW").
    decay_var_list: The variables that decay (keyword-only); None or empty: all. apply_gradients
      and minimize take it too, as contrib's did, for that call.
    amsgrad, lazy, fused: As AdamOptimizer (keyword-only).

  Slots are AdamOptimizer's ("m", "v", and "vhat" with amsgrad), saved under `name`.
  """

  def __init__(self, weight_decay, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
               use_locking=False, name="AdamW", *, decay_var_list=None, amsgrad=False,
               lazy=False, fused=True, state_bits=32,
               min_8bit_size=state_8bit_choice.DEFAULT_MIN_8BIT_SIZE):
    super().__init__(learning_rate, beta1, beta2, epsilon, use_locking, name, lazy=lazy,
                     fused=fused, amsgrad=amsgrad, state_bits=state_bits,
                     min_8bit_size=min_8bit_size)
    self._hyper.add("weight_decay", weight_decay, direct=True)
    self._decay_var_set = _variable_set(decay_var_list)

  # --- which variables decay ---------------------------------------------------------------------

  def apply_gradients(self, grads_and_vars, global_step=None, name=None, decay_var_list=None,
                      skip_gradients_aggregation=False):
    """As AdamOptimizer's; `decay_var_list`, as contrib's, limits this call's decay to those."""
    with self._decaying(decay_var_list):
      return super().apply_gradients(grads_and_vars, global_step=global_step, name=name,
                                     skip_gradients_aggregation=skip_gradients_aggregation)

  def minimize(self, loss, global_step=None, var_list=None, gate_gradients=1,
               aggregation_method=None, colocate_gradients_with_ops=False, name=None,
               grad_loss=None, decay_var_list=None):
    """As the base class's minimize, with contrib's `decay_var_list`."""
    with self._decaying(decay_var_list):
      return super().minimize(loss, global_step=global_step, var_list=var_list,
                              gate_gradients=gate_gradients, aggregation_method=aggregation_method,
                              colocate_gradients_with_ops=colocate_gradients_with_ops, name=name,
                              grad_loss=grad_loss)

  @contextlib.contextmanager
  def _decaying(self, decay_var_list):
    """This thread's call decays `decay_var_list` if given (empty: every variable, as contrib's);
    None leaves the constructor's. Kept per thread, as a 1-tuple of _variable_set's result."""
    previous = getattr(self._this_step, "call_decay_var_set", None)
    if decay_var_list is not None:
      self._this_step.call_decay_var_set = (_variable_set(decay_var_list),)
    try:
      yield
    finally:
      self._this_step.call_decay_var_set = previous

  def _effective_decay_set(self):
    """The variables that decay in this thread's call (by ref), or None for all of them."""
    call = getattr(self._this_step, "call_decay_var_set", None)
    return call[0] if call is not None else self._decay_var_set

  def _has_weight_decay(self):
    return True

  def _decays(self, var):
    decay_set = self._effective_decay_set()
    if decay_set is None:
      return True
    # Under tf.distribute the update sees each device's component of a mirrored variable; the list
    # names the variable the user made.
    return var.ref() in decay_set or distribute_utils.value_container(var).ref() in decay_set

  def _decay_signature(self):
    decay_set = self._effective_decay_set()
    return None if decay_set is None else frozenset(decay_set)

  def _sparse_v_term_as_written(self):
    # No stock AdamW exists in TF 2.21 whose graphs grappler rewrites: the sparse rule is the
    # published one, (g * g) * (1 - beta2) as written, in every mode (eager runs contrib's that way;
    # in a graph grappler may reorder contrib's product, depending on the graph).
    return True

  @classmethod
  def _deserialize_from_proto(cls, **kwargs):
    """A loaded optimizer holds the loaded steps' state; their weight decay is in the functions."""
    return cls._holding_loaded_states(cls(0.0))
