"""The v1 optimizers' fast path: a step over eager variables from a plan kept per variable list.

Eager steps (and tf.function traces over eager variables) whose every gradient is a dense tensor
for a fusable resource variable need no per-variable Python: the plan (_step/plan.py) keeps the
groups and which powers their op advances, and a step checks in C-level loops that it still fits.
"""

import itertools
import operator

import tensorflow as tf
from tensorflow.python.framework import ops as framework_ops
from tensorflow.python.ops import resource_variable_ops

from tf_adam_op._step import grouping
from tf_adam_op._step import plan as plan_lib
from tf_adam_op._step import xla

_SECOND = operator.itemgetter(1)
_DTYPE = operator.attrgetter("dtype")


def plan_key(grads_and_vars, decay_signature):
  """What decides a plan: the variables (ids), which have gradients, and which decay."""
  return (tuple(map(id, map(_SECOND, grads_and_vars))),
          tuple(grad is not None for grad, _ in grads_and_vars), decay_signature)


def fusable(grads_and_vars):
  """Whether every pair can take the fast path (the general path gives stock's errors else)."""
  return (all(grad is None or grouping.is_fusable(grad, var) for grad, var in grads_and_vars)
          and any(grad is not None for grad, _ in grads_and_vars))


def make_plan(grads_and_vars, decays, beta_powers, own_op=lambda var: False):
  """The plan of a fusable step: one group per (device, dtype, decays, round), the positions of
  the variables that take an op of their own (`own_op`: 8-bit states), and the beta powers when
  the step's one op is a group on their device (its op advances them)."""
  with_grads = [(i, var) for i, (grad, var) in enumerate(grads_and_vars) if grad is not None]
  own = [(i, var) for i, var in with_grads if own_op(var)]
  own_positions = {i for i, _ in own}
  groups = plan_lib.plan_groups([(i, var) for i, var in with_grads if i not in own_positions],
                                decays)
  advances = (len(groups) == 1 and not own
              and grouping.powers_on_device(beta_powers, groups[0].device))
  return plan_lib.StepPlan(variables=tuple(map(_SECOND, grads_and_vars)), groups=groups,
                           groups_8bit=plan_lib.plan_groups(own, decays),
                           advancing_powers=beta_powers if advances else None)


def group_gradients(plan, grads_and_vars):
  """Each group's gradient list (the 8-bit groups' after the others'); None unless every one is
  a dense tensor of its group's dtype."""
  result = []
  for group in plan.groups + plan.groups_8bit:
    grads = [grads_and_vars[i][0] for i in group.positions]
    if not all(map(isinstance, grads, itertools.repeat(tf.Tensor))):
      return None
    dtypes = set(map(_DTYPE, grads))
    if len(dtypes) != 1 or dtypes.pop() != group.dtype:
      return None
    result.append(grads)
  return result


def advance_global_step(global_step, update_ops):
  """global_step += 1 after `update_ops`: in graphs by control dependencies, and under XLA, which
  drops those, by data too (xla.after_updates), so a step that fails while it runs (a bad index,
  a corrupt 8-bit state) leaves it. The op."""
  one = tf.convert_to_tensor(1, dtype=global_step.dtype)
  if xla.in_xla_context():
    one = xla.after_updates(update_ops)(one)[0]
  with tf.control_dependencies(update_ops if not tf.executing_eagerly() else []):
    return resource_variable_ops.assign_add_variable_op(global_step.handle, one)


def train_op(update_ops, global_step, scope):
  """The step's result as stock returns it: global_step advanced after the updates; None in eager
  mode, else a group in the TRAIN_OP collection."""
  in_graph = not tf.executing_eagerly()
  if global_step is not None:
    update_ops = [advance_global_step(global_step, update_ops)]
  if not in_graph:
    return None
  op = tf.group(*update_ops, name=scope)
  framework_ops.add_to_collection(framework_ops.GraphKeys.TRAIN_OP, op)
  return op
