"""Packed handle vectors: the handles of a group's variables (and slots) as one tensor each.

A multi-tensor op takes its variables as vectors of resource handles. Eager variables are packed
once into PackedHandles resources: an eager call passes three inputs instead of 3N, a tf.function
captures three tensors, and tf.saved_model saves them as resources of the optimizer. Graph variables
(TF1) get Pack ops in their graph, so nothing outlives the graph.
"""

import copy
import operator

import tensorflow as tf
from tensorflow.python.framework import func_graph
from tensorflow.python.framework import ops
from tensorflow.python.saved_model import registration
from tensorflow.python.trackable import resource

from tf_adam_op import _ordering
from tf_adam_op import ops as adam_ops
from tf_adam_op._step import grouping
from tf_adam_op._step.plan import BoundedCache


def pack_eager(variable_lists, device, tracked_lists=None):
  """PackedHandles over each list of eager variables, on `device` (grouping.host_device), and
  their handle vectors as eager tensors (also when first asked inside a tf.function).
  `tracked_lists`: per list, the objects a SavedModel tracks for its variables where those are
  not the variables themselves (Keras's variables, which wrap them)."""
  tracked_lists = tracked_lists or [None] * len(variable_lists)
  packed = [PackedHandles(variables, device, tracked)
            for variables, tracked in zip(variable_lists, tracked_lists)]
  with ops.init_scope():
    return packed, tuple(p.resource_handle for p in packed)


def pack_in_graph(variable_lists, device):
  """Pack ops over each list of graph variables, in the graph being built."""
  with tf.device(device):
    return tuple(adam_ops.pack_handles([v.handle for v in variables])
                 for variables in variable_lists)


@registration.register_serializable(package="tf_adam_op")
class PackedHandles(resource.CapturableResource):
  """The handles of some variables packed into one vector, as a resource.

  A tf.function captures it as one input (instead of one per variable), and tf.saved_model can save
  it: it records how to rebuild the vector (a Pack of the variables' handles, which are saved
  themselves), so a loaded train step finds its variables again. tf.saved_model.load revives it as
  a PackedHandles over the loaded variables (registered below), so a loaded model can be saved
  again and its steps are ordered with other ops on its variables (_ordering.py).
  """

  def __init__(self, variables, device, tracked=None):
    self._packed_variables = list(variables)  # not tracked here: they are tracked where they live
    # What a SavedModel tracks for them, saved and loaded before this: the variables, or the
    # objects that wrap them (a Keras variable wraps its tf.Variable).
    self._tracked_variables = self._packed_variables if tracked is None else list(tracked)
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
    return {f"variable_{i}": v for i, v in enumerate(self._tracked_variables)}

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


# How many variable lists' packed handle vectors a cache keeps (a model usually has one or two).
LISTS_KEPT = 16


class PackedHandleCache:
  """The packed handle vectors of eager variable lists, kept per list (by identity) so that a
  step packs nothing and a tf.function captures the same vectors every trace."""

  def __init__(self, size=LISTS_KEPT):
    self._entries = BoundedCache(size)

  def handles(self, variables, variable_lists, device):
    """The vectors of `variable_lists()` (called only when `variables` are not cached yet; its
    first list is `variables`), packed on `device`."""
    key = tuple(map(id, variables))
    cached = self._entries.get(key)
    if cached is None or not all(map(operator.is_, cached[0], variables)):
      packed, handles = pack_eager(variable_lists(), device)
      cached = self._entries.put(key, (tuple(variables), packed, handles))
    return cached[2]

  def vectors(self, variables, variable_lists):
    """The vectors of `variable_lists()`, on the host of variables[0]: kept for eager variables
    (handles), Pack ops in the graph for graph variables (TF1).

    Variables passed to a tf.function as arguments are the exception: TensorFlow runs the trace
    made for the first call with the handles of each call's arguments (a later call may pass other
    variables, or the same in another order), and stock's ops take `var.handle`, which stands for
    the argument there. So their vector (the first list) is packed in the graph, from those
    handles; the other lists (slots) stay the trace's own, as stock's `get_slot` does."""
    device = grouping.host_device(variables[0].device)
    if any(getattr(v, "_in_graph_mode", True) for v in variables):
      return pack_in_graph(variable_lists(), device)
    vectors = self.handles(variables, variable_lists, device)
    if passed_as_arguments(variables):
      return pack_in_graph([variables], device) + vectors[1:]
    return vectors

  def resources(self):
    """The PackedHandles of each kept list, in the order they were made (for tf.saved_model)."""
    return [packed for _, packed, _ in self._entries.values()]


def passed_as_arguments(variables):
  """Whether any of `variables` (eager) was passed as an argument to a tf.function being traced
  here or around here: TensorFlow's own test (FuncGraph.watch_variable), its handle among the
  function's resource inputs, which a variable only reached through a capture is not."""
  graph = ops.get_default_graph()
  while isinstance(graph, func_graph.FuncGraph):
    arguments = getattr(graph, "_resource_tensor_inputs", ())
    if any(v.handle in arguments for v in variables):
      return True
    graph = graph.outer_graph
  return False


class TracedPackedHandles:
  """The PackedHandles made while a tf.function was being traced, which its function captures:
  tf.saved_model must find each one tracked, however many have been made since. A plain object,
  not a trackable one, so that checkpoints never see them."""

  def __init__(self):
    self._kept = []

  def keep(self, packed_handles):
    self._kept.extend(p for p in packed_handles if not any(p is kept for kept in self._kept))

  def resources(self):
    return list(self._kept)
