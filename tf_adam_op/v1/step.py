"""One v1 step's multi-tensor updates and the beta powers' advance, from a Step value.

The optimizer (optimizer.py) decides which dense updates are grouped (in _finish, or on the eager
fast path from a StepPlan); this module makes a step's groups into ops: one multi-tensor op per
group, packed handles outside XLA, handle lists under XLA (ordered after the step's sparse updates
by data), and then stock's _finish, beta_power *= beta.
"""

import dataclasses
import threading
from typing import Callable, Optional

import tensorflow as tf
from tensorflow.python.framework import ops as framework_ops

from tf_adam_op import ops
from tf_adam_op._step import apply
from tf_adam_op._step import xla
from tf_adam_op._step.scalars import StepScalars


@dataclasses.dataclass(frozen=True)
class Step:
  """What one step's updates need from the optimizer, as values."""
  # (dtype, with_powers=True) -> the StepScalars of an update of `dtype` variables (its weight
  # decay input included where the optimizer has one; without the powers for an advancing op).
  scalars: Callable[..., StepScalars]
  slot: Callable  # (variable, slot name) -> the slot variable
  slot_names: tuple  # ("m", "v") or, with AMSGrad, ("m", "v", "vhat")
  # variables -> their (and their slots') packed handle vectors, in slot_names order.
  packed_handles: Callable
  beta_powers: tuple  # the accumulators beta1_power, beta2_power
  betas: tuple  # this step's beta1, beta2 tensors (stock's _beta1_t, _beta2_t)
  use_locking: bool
  lock: threading.RLock  # held while the powers advance in eager mode

  def handle_lists(self, variables):
    """Under XLA: the handles of variables and of each of their slots, as lists."""
    return ([v.handle for v in variables],
            *([self.slot(v, name).handle for v in variables] for name in self.slot_names))


def placed_with(var):
  """Where a group's op goes: with its first variable. Packed handles do not tell placement where
  the variables are: an eager variable's device is spelled out (eager steps, tf.function), a graph
  variable (TF1) has the op colocated with it."""
  if getattr(var, "_in_graph_mode", True):
    return framework_ops.colocate_with(var)
  return tf.device(var.device)


def powers_advance_exactly_in_op(step, dtype):
  """Whether the multi-tensor op for `dtype` variables can advance the beta powers with stock's
  numbers. Stock multiplies each power by its beta in the power's dtype (the dtype of the beta
  given at construction: float32 for a Python float, float64 for np.float64, int32 for 0); the op
  multiplies in float32 or float64 by the beta it is given in the update's compute dtype. That is
  stock's product when the powers are float32 or float64, the betas are of the same dtype, and
  converting them to the compute dtype loses nothing (same dtype, or float32 widened to float64).
  Otherwise the powers are advanced by stock's own ops after the update."""
  power_dtypes = {p.dtype.base_dtype for p in step.beta_powers}
  beta_dtypes = {tf.as_dtype(b.dtype) for b in step.betas}
  if len(power_dtypes) != 1 or power_dtypes != beta_dtypes:
    return False
  power_dtype, compute = power_dtypes.pop(), ops.compute_dtype(dtype)
  return power_dtype in (tf.float32, tf.float64) and (
      power_dtype == compute or (power_dtype, compute) == (tf.float32, tf.float64))


def apply_groups(step, groups, advancing_powers, update_ops):
  """One multi-tensor op per (variables, dtype, grads, decays) group, after `update_ops` (the
  step's other updates); returns all of the step's ops, the beta powers' advance included.

  With `advancing_powers` (the step's only group, on the powers' device) that group's op reads
  and advances the powers itself. Otherwise each group gets the powers as values and they are
  advanced afterwards, as stock's _finish does.
  """
  update_ops = list(update_ops)
  if advancing_powers is not None and not powers_advance_exactly_in_op(step, groups[0][1]):
    advancing_powers = None
  if xla.in_xla_context():  # XLA compiles the unpacked op; the powers advance after it
    # XLA orders by data only: the groups' gradients are made to depend on the step's other
    # (sparse) updates, the powers on all, so a sparse op that fails while it runs (an index out
    # of range) stops the step before the groups and the powers are written.
    with tf.control_dependencies(update_ops):
      after_sparse = xla.after_updates(update_ops)
    for variables, dtype, grads, decays in groups:
      grads = list(after_sparse(*grads))
      with placed_with(variables[0]):
        update_ops.append(apply.group_unpacked(
            step.handle_lists(variables), step.scalars(dtype), grads, decays=decays,
            use_locking=step.use_locking))
    with tf.control_dependencies(update_ops):
      after = xla.after_updates(update_ops)
    return update_ops + advance_beta_powers(step, update_ops, after)
  for variables, dtype, grads, decays in groups:
    handles = step.packed_handles(variables)  # on the host, outside the placement below
    with placed_with(variables[0]):
      if advancing_powers is not None:
        update_ops.append(apply.group_advancing(
            handles, advancing_powers, step.scalars(dtype, with_powers=False), grads,
            decays=decays, use_locking=step.use_locking))
      else:
        update_ops.append(apply.group(handles, step.scalars(dtype), grads, decays=decays,
                                      use_locking=step.use_locking))
  if advancing_powers is None:
    in_graph = not tf.executing_eagerly()
    update_ops += advance_beta_powers(step, update_ops if in_graph else [])
  return update_ops


def advance_beta_powers(step, update_ops, after: Optional[Callable] = None):
  """Stock's _finish: beta_power *= beta, after every update of the step.

  A read, a multiply and an assign: in eager mode, threads stepping one optimizer would lose each
  other's advances (stock's do), so the three run under the optimizer's lock there. Under XLA
  `after` (xla.after_updates) makes the betas depend on the updates' results, so that the advance
  runs after them (XLA orders by data only). The betas, not the powers' values: a variable's value
  through that conditional makes XLA copy its donated buffer first, and the step's temporaries
  may then sit in it before a failing op stops the step.
  """
  if tf.executing_eagerly():
    with step.lock:
      return _advance(step, update_ops)
  return _advance(step, update_ops, after)


def _advance(step, update_ops, after=None):
  with tf.control_dependencies(update_ops):
    beta1_power, beta2_power = step.beta_powers
    beta1, beta2 = step.betas
    with framework_ops.colocate_with(beta1_power):
      if after is not None:  # the betas, not the powers' values (see advance_beta_powers)
        beta1, beta2 = after(tf.convert_to_tensor(beta1), tf.convert_to_tensor(beta2))
      update_beta1 = beta1_power.assign(beta1_power * beta1, use_locking=step.use_locking)
      update_beta2 = beta2_power.assign(beta2_power * beta2, use_locking=step.use_locking)
  return [update_beta1, update_beta2]
