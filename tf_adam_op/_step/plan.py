"""Step plans: what a step over one list of variables needs besides its gradients, made once.

Both optimizer families keep one per variable list (by identity) and reuse it while the same
variables come back: the groups (grouping.py), their decays, and for eager variables their packed
handle vectors, so a step pays for no per-variable slot lookup, name scope or processor.
"""

import dataclasses
import operator
from typing import List, Optional, Tuple

import tensorflow as tf

from tf_adam_op._step import grouping


@dataclasses.dataclass
class PlannedGroup:
  """One multi-tensor op of a planned step: where its gradients sit in the step's list, its
  variables, and (when packed) the handle vectors of vars, ms, vs (and vhats)."""
  device: str
  dtype: tf.DType
  decays: bool
  positions: List[int]
  variables: List[tf.Variable]
  handles: Optional[tuple] = None
  packed: Optional[list] = None  # the PackedHandles behind `handles` (for tf.saved_model)
  # A group with 8-bit states: per state, the lists of its codes and its scales variables (m codes,
  # m scales, v codes, v scales[, vhat's]).
  states: Optional[tuple] = None
  names: Optional[list] = None  # its variables' names, for the op's errors (8-bit groups)


@dataclasses.dataclass
class StepPlan:
  variables: Tuple  # the variables the plan is for, checked by identity
  groups: List[PlannedGroup]
  # one op each: IndexedSlices gradients
  sparse_positions: List[int] = dataclasses.field(default_factory=list)
  # the variables with 8-bit states, one ResourceApplyAdam8bitMulti per group (`states` set)
  groups_8bit: List[PlannedGroup] = dataclasses.field(default_factory=list)
  # The host framework's own update (Keras: where its arithmetic is not the ops').
  host_positions: List[int] = dataclasses.field(default_factory=list)
  # The beta power accumulators, when the step's one group reads and advances them (v1).
  advancing_powers: Optional[tuple] = None


def plan_groups(positioned_variables, decays):
  """[(position, var)] -> [PlannedGroup]: grouping.group_updates, by position (the caller packs
  handles where it keeps them)."""
  return [PlannedGroup(group.device, group.dtype, group.decays, list(group.items), group.variables)
          for group in grouping.group_updates(positioned_variables, decays)]


class BoundedCache:
  """A dict of at most `size` entries that forgets the oldest first (a model has one or two
  variable lists; a process that builds many must not keep them all alive)."""

  def __init__(self, size=16):
    self._size = size
    self._entries = {}

  def get(self, key):
    return self._entries.get(key)

  def put(self, key, value):
    if key not in self._entries and len(self._entries) >= self._size:
      self._entries.pop(next(iter(self._entries)))
    self._entries[key] = value
    return value

  def values(self):
    return self._entries.values()


class PlanCache(BoundedCache):
  """Step plans by key (the variables' ids and whatever else decides the plan); a plan is returned
  only while its variables are still the very objects given (ids can be reused)."""

  def plan_for(self, key, variables):
    plan = self.get(key)
    if plan is not None and all(map(operator.is_, plan.variables, variables)):
      return plan
    return None
