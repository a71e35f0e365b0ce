"""A Keras step's plan, and what the step layer needs to know of each variable.

The plan (_step/plan.py, kept per variable list and sparse pattern) says which variables Keras's
own update_step updates, which take one sparse op each, and the multi-tensor groups with their
packed handles, so an eager step pays no per-variable lookup (which costs Keras's eager steps most
of their time).
"""

import dataclasses
from typing import Any, Callable

from tf_adam_op._step import grouping
from tf_adam_op._step import packed
from tf_adam_op._step import plan as plan_lib
from tf_adam_op.keras._decisions import error_name, tf_variable


@dataclasses.dataclass(frozen=True)
class KerasStep:
  """What one round of a Keras step needs per variable, as the optimizer (adam.py) decides it."""
  optimizer: Any  # its public hyperparameters and `iterations` (_inputs.step_scalars)
  iterations: Any  # the tf.Variable Keras advances after the step
  slots: Callable  # Keras variable -> its m, v and vhat (None without AMSGrad) tf.Variables
  keras_slots: Callable  # the same as the Keras variables (what a SavedModel tracks)
  keras_computes: Callable  # tf.Variable -> whether Keras's own update_step updates it
  has_8bit_states: Callable  # tf.Variable -> whether its states are 8-bit (their own op family)
  states_8bit: Callable  # Keras variable -> its (codes, absmax) tf.Variable pairs of m, v (, vhat)
  keras_states_8bit: Callable  # the same as the Keras variables (what a SavedModel tracks)
  decays: Callable  # tf.Variable -> whether the op applies its weight decay
  keras_update: Callable  # Keras's own update_step(grad, variable, learning_rate)
  update_one: Callable  # one fused op: (grad, Keras variable, learning_rate) -> op
  # (dtype, learning_rate, decays) -> the StepScalars of an update the step's other updates do not
  # wait for: under XLA, after the step's checks (8-bit scales, sparse indices: adam.py
  # _checked_scalars)
  checked_scalars: Callable
  # () -> the step's checks under XLA (each a float32 1.0; none outside XLA): what Keras's own
  # updates wait for (_xla_step.fused_step), as the fused ones do through checked_scalars
  checks: Callable

  tf_variable = staticmethod(tf_variable)

  @staticmethod
  def check_dtype(var):
    dtype = var.dtype.base_dtype
    if dtype not in grouping.FUSED_DTYPES:
      raise ValueError(
          f"tf_adam_op.keras cannot update variable {var.name!r} of dtype {dtype.name}: supported "
          f"dtypes are {', '.join(d.name for d in grouping.FUSED_DTYPES)}")


def slot_lists(slots, keras_variables):
  """The m, v (and, with AMSGrad, vhat) of `keras_variables`, one list per slot: `slots` is
  KerasStep.slots (tf.Variables) or KerasStep.keras_slots."""
  by_slot = zip(*(slots(keras_var) for keras_var in keras_variables))
  return [list(slots) for slots in by_slot if slots[0] is not None]


def state_8bit_lists(pairs_of, keras_variables):
  """The codes and the scales of m, v (and, with AMSGrad, vhat) of `keras_variables`, one list
  each (m codes, m scales, v codes, ...): `pairs_of` is KerasStep.states_8bit or keras_states_8bit."""
  pairs = [pairs_of(keras_var) for keras_var in keras_variables]
  return tuple([variable_pairs[state][part] for variable_pairs in pairs]
               for state in range(len(pairs[0])) if pairs[0][state] is not None for part in (0, 1))


def op_error_names(keras_variables):
  """What an 8-bit multi-tensor op's errors call each variable (its variable_names)."""
  return [repr(error_name(v)) for v in keras_variables]


def make_plan(step, trainable_variables, sparse):
  """The plan of a round over `trainable_variables` (`sparse`: which gradients are IndexedSlices)."""
  dense, dense_8bit, sparse_positions, keras_positions = [], [], [], []
  for i, (keras_var, is_sparse) in enumerate(zip(trainable_variables, sparse)):
    var = tf_variable(keras_var)
    step.check_dtype(var)
    if step.keras_computes(var):
      keras_positions.append(i)
    elif is_sparse:
      sparse_positions.append(i)
    else:
      (dense_8bit if step.has_8bit_states(var) else dense).append((i, var))
  decays = {id(var): step.decays(var) for _, var in dense + dense_8bit}

  groups = plan_lib.plan_groups(dense, lambda var: decays[id(var)])
  for group in groups:
    keras_vars = [trainable_variables[i] for i in group.positions]
    lists = [group.variables] + slot_lists(step.slots, keras_vars)
    tracked = [keras_vars] + slot_lists(step.keras_slots, keras_vars)
    group.packed, group.handles = packed.pack_eager(lists, grouping.host_device(group.device),
                                                    tracked)
  groups_8bit = plan_lib.plan_groups(dense_8bit, lambda var: decays[id(var)])
  for group in groups_8bit:
    keras_vars = [trainable_variables[i] for i in group.positions]
    group.states = state_8bit_lists(step.states_8bit, keras_vars)
    group.names = op_error_names(keras_vars)
    tracked = [keras_vars] + list(state_8bit_lists(step.keras_states_8bit, keras_vars))
    group.packed, group.handles = packed.pack_eager([group.variables, *group.states],
                                                    grouping.host_device(group.device), tracked)
  return plan_lib.StepPlan(tuple(trainable_variables), groups, sparse_positions=sparse_positions,
                           groups_8bit=groups_8bit, host_positions=keras_positions)
