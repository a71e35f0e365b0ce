"""How AdamOptimizer batches dense updates of resource variables into multi-tensor ops.

A step's dense gradients for resource variables are grouped by (device, dtype, whether the variable
decays: AdamWOptimizer's decay_var_list); each group is one ResourceApplyAdamV1Multi* op. Everything else (ref variables, sparse gradients, variables with a
constraint, which must see their own update before the constraint runs) keeps its own op.
"""

import copy
import dataclasses
import itertools
import operator
from typing import List, Optional, Tuple

import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import resource_variable_ops
from tensorflow.python.saved_model import registration
from tensorflow.python.trackable import resource

from tf_adam_op import _ordering


_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def is_fusable(grad, var):
  """Whether (grad, var) can join a multi-tensor op. A gradient of another dtype cannot (the
  optimizer rejects it before building anything: _check_variable_dtypes), nor a variable of a
  dtype the ops do not compute (complex: stock's kernel, _stock_dtypes.py)."""
  return (resource_variable_ops.is_resource_variable(var)
          and var.dtype.base_dtype in _FUSED_DTYPES
          and getattr(var, "constraint", None) is None
          and isinstance(grad, tf.Tensor)
          and grad.dtype == var.dtype.base_dtype)


@dataclasses.dataclass
class UpdateGroup:
  """Dense updates of variables sharing a device, a dtype and whether they decay: one op."""
  device: str
  dtype: tf.DType
  decays: bool = False
  variables: List[tf.Variable] = dataclasses.field(default_factory=list)
  grads: List[tf.Tensor] = dataclasses.field(default_factory=list)


def _never(unused_var):
  return False


def group_updates(pairs, decays=_never):
  """[(grad, var)] -> [UpdateGroup], in order of first appearance; `decays(var)` says whether a
  variable's update includes the weight decay. The first item of a pair is carried along as it is
  (the eager plan passes gradient positions).

  A variable given k times is in k groups, one per round (stock and Keras apply its updates in
  turn): the k-th of its updates is in a group of round k, made after the group of its (k-1)-th,
  and the ops run in that order (eagerly as made; in graphs ordered on the variable, _ordering.py;
  under XLA by data)."""
  groups, rounds = {}, {}
  for grad, var in pairs:
    round_of_var = rounds.get(id(var), 0)
    rounds[id(var)] = round_of_var + 1
    key = (var.device, var.dtype.base_dtype, bool(decays(var)), round_of_var)
    if key not in groups:
      groups[key] = UpdateGroup(*key[:3])
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
class PlannedGroup:
  """One group of the fast path: its variables and where their gradients sit in the step's list."""
  device: str
  dtype: tf.DType
  decays: bool
  positions: List[int]
  variables: List[tf.Variable]


_SECOND = operator.itemgetter(1)
_DTYPE = operator.attrgetter("dtype")


@dataclasses.dataclass
class StepPlan:
  """What the fast path keeps between steps for one list of (eager) variables.

  Built on the first step and reused while the same variables (by identity) come with gradients in
  the same places, so a step pays for no per-variable slot lookup, name scope or processor. The
  per-step checks run as C-level map/all loops: a few microseconds for hundreds of variables.
  """
  variables: Tuple[tf.Variable, ...]
  has_grad: Tuple[bool, ...]
  groups: List[PlannedGroup]
  # The beta power accumulators when there is one group, on their device: its op advances them.
  beta_powers: Optional[tuple]
  # What decided which variables decay (AdamWOptimizer's decay_var_list), when the plan was made.
  decay_signature: object = None

  def matches(self, grads_and_vars, decay_signature=None):
    return (decay_signature == self.decay_signature
            and len(grads_and_vars) == len(self.variables)
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


@registration.register_serializable(package="tf_adam_op")
class PackedHandles(resource.CapturableResource):
  """The handles of some variables packed into one vector, as a resource.

  A tf.function captures it as one input (instead of one per variable), and tf.saved_model can save
  it: it records how to rebuild the vector (a Pack of the variables' handles, which are saved
  themselves), so a loaded train step finds its variables again. tf.saved_model.load revives it as
  a PackedHandles over the loaded variables (registered below), so a loaded model can be saved
  again and its steps are ordered with other ops on its variables (_ordering.py).
  """

  def __init__(self, variables, device):
    self._packed_variables = list(variables)  # not tracked here: they are tracked where they live
    super().__init__(device=device)

  def _create_resource(self):
    # Reshape drops the handle data Pack copies from its first input (one variable's dtype and
    # shape): it describes no vector, and a SavedModel loader would take it for a scalar handle.
    handles = [v.handle for v in self._packed_variables]
    vector = tf.reshape(tf.stack(handles), [-1])
    if isinstance(vector, ops.EagerTensor):  # so tf.function orders it with its variables' other ops
      _ordering.register_packed(vector, handles)
    return vector

  def _deserialization_dependencies(self, children):
    # Saved and loaded after the variables it packs.
    return {f"variable_{i}": v for i, v in enumerate(self._packed_variables)}

  @classmethod
  def _deserialize_from_proto(cls, object_proto, dependencies, **unused_kwargs):
    count = sum(key.startswith("variable_") for key in dependencies)
    variables = [dependencies[f"variable_{i}"] for i in range(count)]
    return cls(variables, object_proto.resource.device)

  def _export_to_saved_model_graph(self, object_map, tensor_map, **unused_kwargs):
    # In the SavedModel's graph the vector packs the exported copies of the variables.
    exported = copy.copy(self)
    exported._packed_variables = [object_map[v] for v in self._packed_variables]
    with tf.device(self._resource_device):
      handle = exported._create_resource()
    exported._resource_handle = handle
    object_map[self] = exported
    tensor_map[self.resource_handle] = handle
    return [self.resource_handle]
