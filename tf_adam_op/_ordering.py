"""Program order for the multi-tensor ops inside tf.function (automatic control dependencies).

TensorFlow orders the stateful ops of a function per resource, in program order, by the identity of
the resource tensors an op takes (auto_control_deps.py). A multi-tensor op takes its variables as
*packed* handle vectors, so on its own it would share no resource tensor with a `w.read_value()` or
`w.assign(...)` in the same function, and float free of them.

TensorFlow's documented hook for exactly this is `register_acd_resource_resolver`: a function that is
shown each op's resource inputs and may name more. Ours names, for every packed vector an op takes
(the multi-tensor op itself, or a cond/while/call op whose body contains one), the resources the
vector holds, as they appear in the graph being ordered:
- the variable's own captured handle, where some other op of the function captured it (an op that
  touches the variable always does); a variable nothing else touches adds no capture and no cost;
- every other packed vector in that graph holding the same variable (two optimizers, or one
  optimizer's two calls over overlapping lists, are ordered with each other).
The resources and packed vectors are matched at the root: the eager tensor a function (or a nest of
them: cond branches, while bodies, inner functions) ultimately captured.

Which packed vectors hold which handles: `register_packed(vector, handles)` for an eager vector (the
optimizer's PackedHandles, also when revived by tf.saved_model.load); a vector built in the graph
itself by Pack (TF1-style graph variables) is read off the Pack op.
"""

import weakref

from tensorflow.python.framework import auto_control_deps
from tensorflow.python.framework import dtypes
from tensorflow.python.framework import ops
from tensorflow.python.util import object_identity

# id(eager packed vector) -> (weak reference to it, its member handles as a tuple of eager tensors)
_PACKED = {}


def register_packed(vector, handles):
  """Records that the eager resource vector `vector` holds `handles` (eager resource tensors)."""
  key = id(vector)
  _PACKED[key] = (weakref.ref(vector, lambda _: _PACKED.pop(key, None)), tuple(handles))


def _registered_members(tensor):
  entry = _PACKED.get(id(tensor))
  if entry is None or entry[0]() is not tensor:
    return None
  return entry[1]


class _GraphIndex:
  """For one function graph: the external tensor of each capture, and, per member handle, the
  packed vectors of this graph that hold it. Rebuilt when the graph gains captures."""

  def __init__(self, graph):
    captures = graph.captures
    self.size = len(captures)
    self.external_of = {id(internal): external for external, internal in captures}
    self.vectors_holding = {}  # id(root member handle) -> [packed placeholders of this graph]
    for external, internal in captures:
      if internal.dtype != dtypes.resource:
        continue
      for member in _registered_members(_root(external)) or ():
        self.vectors_holding.setdefault(id(member), []).append(internal)


_INDEXES = weakref.WeakKeyDictionary()


def _index(graph):
  index = _INDEXES.get(graph)
  if index is None or index.size != len(graph.captures):
    index = _INDEXES[graph] = _GraphIndex(graph)
  return index


def _is_function_graph(graph):
  return getattr(graph, "building_function", False) and hasattr(graph, "captures")


def _root(tensor):
  """The tensor a (possibly nested) capture stands for: an eager tensor, or a tensor of the
  outermost graph that built it."""
  while not isinstance(tensor, ops.EagerTensor):
    graph = tensor.graph
    if not _is_function_graph(graph):
      break
    external = _index(graph).external_of.get(id(tensor))
    if external is None:
      break
    tensor = external
  return tensor


def _members(tensor):
  """The handles the resource vector `tensor` holds (possibly through captures), or None."""
  op = getattr(tensor, "op", None)
  if op is not None and op.type == "Pack":
    return tuple(op.inputs)
  root = _root(tensor)
  if root is tensor and op is not None:
    return None  # a graph tensor that is not a capture: not a vector of ours
  return _registered_members(root)


def _in_graph(graph, member):
  """How `member` (a handle, or a capture of one) appears in `graph`, or None if it does not."""
  if getattr(member, "graph", None) is graph:
    return member
  if not _is_function_graph(graph):
    return None
  root = _root(member)
  internal = graph._function_captures.by_val_internal.get(id(root))
  return internal


def _expand(graph, resources):
  """The resources to add to `resources` (an op's reads or its writes) for the vectors among them."""
  added = object_identity.ObjectIdentitySet()
  index = None
  for tensor in resources:
    if tensor.dtype != dtypes.resource:
      continue
    members = _members(tensor)
    if not members:
      continue
    if index is None and _is_function_graph(graph):
      index = _index(graph)
    for member in members:
      own = _in_graph(graph, member)
      if own is not None:
        added.add(own)
      if index is not None:
        added.update(index.vectors_holding.get(id(_root(member)), ()))
  return [t for t in added if t not in resources]


@auto_control_deps.register_acd_resource_resolver
def _packed_handles_resolver(op, resource_reads, resource_writes):
  """Adds the resources held by packed handle vectors to an op's reads and writes (see the module
  doc). Returns whether it added any, as the registry asks."""
  if not resource_reads and not resource_writes:
    return False
  if not _PACKED and not any(t.op.type == "Pack" for t in (*resource_reads, *resource_writes)):
    return False
  graph = op.graph
  new_reads = _expand(graph, resource_reads)
  new_writes = _expand(graph, resource_writes)
  resource_reads.update(new_reads)
  resource_writes.update(new_writes)
  return bool(new_reads or new_writes)
