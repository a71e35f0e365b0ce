"""How AdamOptimizer batches dense updates of resource variables into multi-tensor ops.

A step's dense gradients for resource variables are grouped by (device, dtype); each group is one
ResourceApplyAdamV1Multi* op. Everything else (ref variables, sparse gradients, variables with a
constraint, which must see their own update before the constraint runs) keeps its own op.
"""

import dataclasses
import itertools
import operator
from typing import List, Optional, Tuple

import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops


def is_fusable(grad, var):
  """Whether (grad, var) can join a multi-tensor op; a mismatched gradient dtype keeps its own op
  so it gets the same error as stock."""
  return (resource_variable_ops.is_resource_variable(var)
          and getattr(var, "constraint", None) is None
          and isinstance(grad, tf.Tensor)
          and grad.dtype == var.dtype.base_dtype)


@dataclasses.dataclass
class UpdateGroup:
  """Dense updates of variables sharing a device and a dtype: one op."""
  device: str
  dtype: tf.DType
  variables: List[tf.Variable] = dataclasses.field(default_factory=list)
  grads: List[tf.Tensor] = dataclasses.field(default_factory=list)


def group_by_device_and_dtype(pairs):
  """[(grad, var)] -> [UpdateGroup], in order of first appearance. The first item of a pair is
  carried along as it is (the eager plan passes gradient positions)."""
  groups = {}
  for grad, var in pairs:
    key = (var.device, var.dtype.base_dtype)
    if key not in groups:
      groups[key] = UpdateGroup(*key)
    groups[key].variables.append(var)
    groups[key].grads.append(grad)
  return list(groups.values())


def host_device(device):
  """The CPU of the machine (job, task) that `device` is on: where a group's handles are packed.
  TF has no GPU kernel that packs resource handles, and the ops read their handles from host
  memory anyway."""
  spec = tf.DeviceSpec.from_string(device or "")
  return spec.replace(device_type="CPU", device_index=0).to_string()


def powers_on_device(beta_powers, device):
  """Whether the beta power accumulators are resource variables on `device`, so a multi-tensor op
  on that device can read and advance them itself."""
  return all(resource_variable_ops.is_resource_variable(p) and p.device == device
             for p in beta_powers)


@dataclasses.dataclass
class EagerGroup:
  """One group of the eager fast path, with everything the op needs but the gradients."""
  device: str
  dtype: tf.DType
  positions: List[int]  # where this group's gradients sit in the step's list
  var_handles: tf.Tensor  # vectors of handles, packed once
  m_handles: tf.Tensor
  v_handles: tf.Tensor


_SECOND = operator.itemgetter(1)
_DTYPE = operator.attrgetter("dtype")


@dataclasses.dataclass
class EagerPlan:
  """What the eager fast path keeps between steps for one list of variables.

  Built on the first step and reused while the same variables (by identity) come with gradients in
  the same places, so a step pays for no per-variable slot lookup, name scope or processor. The
  per-step checks run as C-level map/all loops: a few microseconds for hundreds of variables.
  """
  variables: Tuple[tf.Variable, ...]
  has_grad: Tuple[bool, ...]
  groups: List[EagerGroup]
  # The accumulators' handles when there is one group on their device: its op advances them.
  beta_power_handles: Optional[tuple]

  def matches(self, grads_and_vars):
    return (len(grads_and_vars) == len(self.variables)
            and all(map(operator.is_, map(_SECOND, grads_and_vars), self.variables))
            and tuple(grad is not None for grad, _ in grads_and_vars) == self.has_grad)

  def gradients(self, grads_and_vars):
    """Each group's gradient list; None unless every one is a dense tensor of its group's dtype."""
    result = []
    for group in self.groups:
      grads = [grads_and_vars[i][0] for i in group.positions]
      if not all(map(isinstance, grads, itertools.repeat(tf.Tensor))):
        return None
      dtypes = set(map(_DTYPE, grads))
      if len(dtypes) != 1 or dtypes.pop() != group.dtype:
        return None
      result.append(grads)
    return result
