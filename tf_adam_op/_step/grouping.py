"""Which updates share a multi-tensor op, for both optimizer families.

A step's dense gradients for resource variables are grouped by (device, dtype, whether the update
includes the weight decay, round); each group is one ResourceApplyAdamV1Multi* op. Everything else
(ref variables, sparse gradients, variables with a constraint, which must see their own update
before the constraint runs) keeps its own op.
"""

import dataclasses
from typing import Any, List

import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops

FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)  # what the fused ops compute


def is_fusable(grad, var):
  """Whether (grad, var) can join a multi-tensor op. A gradient of another dtype cannot (the
  optimizers reject it before building anything), nor a variable of a dtype the ops do not compute
  (complex: stock's kernel, v1/stock_dtypes.py)."""
  return (resource_variable_ops.is_resource_variable(var)
          and var.dtype.base_dtype in FUSED_DTYPES
          and getattr(var, "constraint", None) is None
          and isinstance(grad, tf.Tensor)
          and grad.dtype == var.dtype.base_dtype)


@dataclasses.dataclass
class UpdateGroup:
  """Dense updates of variables sharing a device, a dtype and whether they decay: one op.
  `items` are what the caller paired with each variable (a gradient, or where it will be)."""
  device: str
  dtype: tf.DType
  decays: bool = False
  variables: List[tf.Variable] = dataclasses.field(default_factory=list)
  items: List[Any] = dataclasses.field(default_factory=list)


def _never(unused_var):
  return False


def group_updates(pairs, decays=_never):
  """[(item, var)] -> [UpdateGroup], in order of first appearance; `decays(var)` says whether a
  variable's update includes the weight decay.

  A variable given k times is in k groups, one per round (stock and Keras apply its updates in
  turn): the k-th of its updates is in a group of round k, made after the group of its (k-1)-th,
  and the ops run in that order (eagerly as made; in graphs ordered on the variable, _ordering.py;
  under XLA by data)."""
  groups, rounds = {}, {}
  for item, var in pairs:
    round_of_var = rounds.get(id(var), 0)
    rounds[id(var)] = round_of_var + 1
    key = (var.device, var.dtype.base_dtype, bool(decays(var)), round_of_var)
    if key not in groups:
      groups[key] = UpdateGroup(*key[:3])
    groups[key].variables.append(var)
    groups[key].items.append(item)
  return list(groups.values())


NONE_REPEATED = frozenset()


def repeated(variables, key=id):
  """The keys of the variables given more than once in one step (a C-level check first: the usual
  step gives each once)."""
  if len(set(map(id, variables))) == len(variables):
    return NONE_REPEATED
  seen, again = set(), set()
  for var in variables:
    k = key(var)
    (again if k in seen else seen).add(k)
  return frozenset(again)


def rounds(grads, variables, key=id):
  """The step's (grads, variables) split into rounds of distinct variables, in order: the k-th
  gradient of a variable given several times is in round k, applied after round k - 1."""
  result, seen = [], {}
  for grad, var in zip(grads, variables):
    k = seen.get(key(var), 0)
    seen[key(var)] = k + 1
    if k == len(result):
      result.append(([], []))
    result[k][0].append(grad)
    result[k][1].append(var)
  return result


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
