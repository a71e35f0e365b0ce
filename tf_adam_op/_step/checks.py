"""Checks of a step's gradients made before anything of the step is written (docs/errors.md).

Two kinds, as the host framework has them:
- what is known while the step is built (shapes): a ValueError then, in every mode, so a
  tf.function or XLA step fails while tracing, as Keras's own does (its shape inference raises
  there), and an eager one before its first write;
- what is known only when the step runs (the values of sparse indices, a shape unknown while
  tracing): `runtime_guards` gives the
  checks as ops that the step's writes are made to wait for (graphs), or raises at once (eager).
  Under XLA they are not built: tf2xla compiles assertions to nothing. The fused sparse op's
  custom call checks its indices itself before it writes (the optimizers make the step's other
  writes depend on it by data, xla.after_updates), and a step with sparse gradients checks all of
  their indices first, as data its updates take (xla_index_check).
"""

import operator

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as framework_ops

from tf_adam_op import ops
from tf_adam_op._step import xla

_EAGER_TENSOR = framework_ops.EagerTensor


def _name(var):
  return getattr(var, "path", None) or getattr(var, "name", None) or repr(var)


def _dims(x):
  """x's shape as a tuple (None for unknown dimensions), cheaply: the checks run every step, and an
  eager tensor's TensorShape costs more than the rest of a small variable's update."""
  if type(x) is _EAGER_TENSOR:
    return x._shape_tuple()
  shape = x.shape
  if type(shape) is tuple:
    return shape
  dims = getattr(shape, "_dims", False)  # TensorShape keeps a tuple of ints (None: unknown rank)
  if dims is None or type(dims) is tuple:
    return dims
  return None if shape.rank is None else tuple(shape.as_list())


def _same_known_shape(grad, var):
  dims = _dims(grad)
  return dims is not None and None not in dims and dims == _dims(var)


def _dense_to_check(grad, var):
  """Whether `grad` is a dense gradient whose shape is not already known to be its variable's."""
  return not (grad is None or isinstance(grad, tf.IndexedSlices) or not hasattr(grad, "shape")
              or _same_known_shape(grad, var))


_SHAPE_TUPLE = operator.methodcaller("_shape_tuple")


def variable_dims(variables):
  """The variables' shapes as tuples, for dense_shapes_equal (kept by the optimizer per variable
  list)."""
  return [_dims(v) for v in variables]


def dense_shapes_equal(grads, dims):
  """Whether every gradient is a tensor of exactly the shape in `dims` (variable_dims): one C-level
  pass for a step's usual case, which then needs no other shape check and no broadcast."""
  try:
    return list(map(_SHAPE_TUPLE, grads)) == dims
  except (AttributeError, TypeError, ValueError):  # an IndexedSlices, a None, an unknown rank
    return False


def broadcasts_to_variable(grad_shape, var_shape):
  """Whether a dense gradient of `grad_shape` broadcasts to exactly `var_shape`, as Keras's update
  needs (its `gradient - m` broadcasts, its `assign_add` to m needs m's shape). Unknown dimensions
  pass: the step then broadcasts when it runs."""
  try:
    shape = tf.broadcast_static_shape(tf.TensorShape(grad_shape), tf.TensorShape(var_shape))
  except ValueError:
    return False
  return shape.is_compatible_with(var_shape) and (
      shape.rank is None or var_shape.rank is None or shape.rank == var_shape.rank)


def _raise_shape_error(message):
  """A shape error of the type TensorFlow's ops raise it in this mode: InvalidArgumentError when
  an op runs eagerly, ValueError from shape inference while a graph is built."""
  if tf.executing_eagerly():
    raise tf.errors.InvalidArgumentError(None, None, message)
  raise ValueError(message)


def check_dense_shapes(grads, variables, who):
  """For Keras's rule (a dense gradient broadcasts to its variable): an error naming the variable
  and both shapes, of the type Keras's arithmetic raises it in this mode (_raise_shape_error),
  before any of the step's ops."""
  for grad, var in zip(grads, variables):
    if not _dense_to_check(grad, var):
      continue
    grad_shape = grad.shape
    if not broadcasts_to_variable(grad_shape, tf.TensorShape(var.shape)):
      _raise_shape_error(
          f"{who}: the gradient for variable {_name(var)!r} has shape {tf.TensorShape(grad_shape)}, "
          f"which does not broadcast to the variable's shape {tf.TensorShape(var.shape)}")


def check_same_shapes(grads, variables, who):
  """For stock's rule (a dense gradient has its variable's shape, no broadcasting): an error naming
  the variable and both shapes, of the type the ops raise it in this mode (_raise_shape_error),
  before any of the step's ops."""
  for grad, var in zip(grads, variables):
    if not _dense_to_check(grad, var):
      continue
    var_shape = tf.TensorShape(var.shape)
    if not tf.TensorShape(grad.shape).is_compatible_with(var_shape):
      _raise_shape_error(f"{who}: the gradient for variable {_name(var)!r} has shape "
                         f"{tf.TensorShape(grad.shape)}, but the variable's is {var_shape}")


def _variable_shape(var, dtype=tf.int32):
  """The variable's shape as a tensor: the static one where known, else its VariableShape op
  (never tf.shape(var), which reads the variable)."""
  if var.shape.is_fully_defined():
    return tf.constant(var.shape.as_list(), dtype)
  return tf.raw_ops.VariableShape(input=var.handle, out_type=dtype)


def _dense_shape_guards(grads, variables, who, broadcast):
  guards = []
  for grad, var in zip(grads, variables):
    if not _dense_to_check(grad, var):
      continue
    var_shape = _variable_shape(var)
    shape = tf.shape(grad, out_type=tf.int32)
    if broadcast:  # raises itself when the shapes do not broadcast
      shape = tf.broadcast_dynamic_shape(shape, var_shape)
    rule = "broadcast to" if broadcast else "equal"
    same = tf.cond(tf.equal(tf.size(shape), tf.size(var_shape)),
                   lambda s=shape, v=var_shape: tf.reduce_all(tf.equal(s, v)),
                   lambda: tf.constant(False))
    guards.append(tf.debugging.Assert(
        same,
        [f"{who}: the gradient for variable {_name(var)!r} does not {rule} the variable's "
         "shape; nothing was updated. gradient:", tf.shape(grad), "variable:", var_shape]))
  return guards


def as_variable_shape(grad, var):
  """A dense gradient broadcast to its variable's shape, as Keras's arithmetic broadcasts it (the
  gradient itself when the shapes are already equal)."""
  if _same_known_shape(grad, var):
    return grad
  return tf.broadcast_to(grad, tf.shape(var))


def runtime_guards(grads, variables, who, broadcast=False, drop_negative=False):
  """The checks of what only the running step knows: every IndexedSlices index in [0, rows) (with
  `drop_negative`, as Keras's rule drops a negative index's row, below rows), and in a graph a
  dense gradient whose shape is not known while tracing has its variable's shape (or, with
  `broadcast`, as Keras, broadcasts to it).

  Eager: raises InvalidArgumentError now, naming the variable and the index, and returns [].
  A graph (tf.function, TF1): returns assertion ops, for the step's writes to wait for.
  Under XLA: [] (see the module doc)."""
  if xla.in_xla_context():
    return []
  guards = [] if tf.executing_eagerly() else _dense_shape_guards(grads, variables, who, broadcast)
  for grad, var in zip(grads, variables):
    if not isinstance(grad, tf.IndexedSlices):
      continue
    indices = grad.indices
    if var.shape.rank == 0:
      continue  # a scalar variable: the sparse op refuses it before it writes
    rows = tf.cast(variable_rows(var, indices.dtype), indices.dtype)
    lowest = indices.dtype.min if drop_negative else 0
    in_range = tf.reduce_all(tf.logical_and(indices >= lowest, indices < rows))
    if tf.executing_eagerly():
      if not bool(in_range):
        bad = indices.numpy()[(indices.numpy() < lowest) | (indices.numpy() >= int(rows))][0]
        raise tf.errors.InvalidArgumentError(
            None, None, f"{who}: an index of the IndexedSlices gradient for variable "
            f"{_name(var)!r} is out of range: {bad} is not in [0, {int(rows)}); nothing was "
            "updated")
      continue
    guards.append(tf.debugging.Assert(
        in_range, [f"{who}: an index of the IndexedSlices gradient for variable {_name(var)!r} "
                   "is out of range [0, rows); nothing was updated. rows:", rows,
                   "indices:", indices], summarize=16))
  return guards


def xla_index_check(grads, variables, who):
  """Under XLA, the check of every IndexedSlices index of a step, as data: one
  CheckIndicesInRange over all of them, whose float32 1.0 each update multiplies its learning
  rate by (apply.after_check: the same number, exactly), so that none runs before every index is
  checked. Each sparse op's own custom call checks only its own indices, after XLA may have run
  other parts of the step: the other sparse updates (XLA does not order them among themselves),
  and arithmetic whose temporaries may sit in a donated variable's buffer (without this check
  Keras's `iterations` with use_ema=True was left holding other bits; the check reads only the
  indices, and XLA schedules it before the step's arithmetic: docs/errors.md). Its message names
  the variable and the index.

  None outside XLA, without sparse gradients, or where the sparse updates are not the ops' XLA
  kernels (the composite path: XLA's scatters, which ignore an index out of range as stock's
  do)."""
  if not xla.in_xla_context():
    return None
  sparse = [(grad, var) for grad, var in zip(grads, variables)
            if isinstance(grad, tf.IndexedSlices) and var.shape.rank != 0]
  if not sparse or not xla.kernels_usable([var for _, var in sparse]):
    return None
  rows = tf.stack([tf.cast(variable_rows(var, tf.int64), tf.int64) for _, var in sparse])
  names = [f"{who}: an index of the IndexedSlices gradient for variable {_name(var)!r} is out of "
           "range; nothing was updated" for _, var in sparse]
  return ops.check_indices_in_range([grad.indices for grad, _ in sparse], rows, names)


def replica_components(distribution, grads_and_vars):
  """(gradients, variables) of a step in a strategy's cross-replica context, each replica's
  gradient with its own component of the variable (what its update reads); a None gradient left
  out."""
  grads, variables = [], []
  for grad, var in grads_and_vars:
    if grad is None:
      continue
    grad_parts = distribution.experimental_local_results(grad)
    var_parts = distribution.experimental_local_results(var)
    if len(var_parts) != len(grad_parts):  # a variable not mirrored: each replica's gradient
      var_parts = var_parts[:1] * len(grad_parts)
    grads.extend(grad_parts)
    variables.extend(var_parts)
  return grads, variables


def variable_rows(var, dtype):
  """var's row count: the static one, else the variable's shape op, never tf.shape(var), which
  reads (and, for a variable in copy-on-read mode, as sparse updates leave it, copies) the whole
  variable."""
  rows = var.shape[0]
  if rows is None:
    rows = tf.raw_ops.VariableShape(input=var.handle, out_type=dtype)[0]
  return rows


def scale_guards(named_scales, who, pack=None):
  """The check of 8-bit states' scales (docs/state_8bit.md), made before a step writes anything:
  `named_scales` is [(variable name, absmax variable)]. Every scale must be >= 0 and finite, or
  NaN (a poisoned block). One Check8bitScales op reads them all. Eager: raises
  InvalidArgumentError now, naming the variable, and returns []. A graph: returns an assertion
  op for the step's writes to wait for. Under XLA: [] (XLA has no assertions: xla_scale_check).
  `pack`: the absmax variables (all on one device) -> their handles packed in one vector, kept by
  the caller (one input instead of one per state)."""
  if xla.in_xla_context() or not named_scales:
    return []
  if tf.distribute.has_strategy():  # a mirrored scale is one variable per replica: no kept vector
    pack = None
    if tf.distribute.in_cross_replica_context():
      named_scales = _per_device_components(named_scales)
  valid = _check_scales_on_their_devices([scales for _, scales in named_scales], pack)
  describe = lambda pairs: [f"{name!r} ({scales.name})" for name, scales in pairs]
  message = (f"{who}: a scale of the 8-bit states of a variable is negative or infinite: the "
             "state is corrupt; nothing was updated. Corrupt states:")
  if tf.executing_eagerly():
    valid = valid.numpy()
    if not valid.all():
      corrupt = [f"{text}: {_first_corrupt_block(pair[1])}" for text, pair, ok in
                 zip(describe(named_scales), named_scales, valid) if not ok]
      raise tf.errors.InvalidArgumentError(None, None, f"{message} {', '.join(corrupt)}")
    return []
  described = describe(named_scales)
  corrupt = tf.boolean_mask(tf.constant(described), tf.logical_not(valid))
  return [tf.debugging.Assert(tf.reduce_all(valid), [message, corrupt], summarize=len(described))]


def _first_corrupt_block(scales):
  """Which block of an absmax variable found corrupt holds the first scale a step cannot leave
  (negative or infinite; NaN is a poisoned block), as the ops' own messages name it. Eager only,
  and only once the check failed: it reads the variable."""
  values = scales.numpy()
  bad = np.flatnonzero((values < 0) | np.isposinf(values))
  if not bad.size:
    return "no corrupt block now"  # changed since the check, by another thread
  return f"block {bad[0]}'s scale is {values[bad[0]]}"


def xla_scale_check(named_scales, who):
  """The same check under XLA, as data: XLA has no assertions and orders ops by data only, and
  each 8-bit op's handler checks only its own scales (an earlier op of the step would already have
  written). So one Check8bitScaleValues reads every scale of the step and returns a float32 1.0,
  which each update the step does not already order by data multiplies its learning rate by
  (apply.after_check: the same number, exactly): no update runs before the check, none after it
  fails. None outside XLA,
  without 8-bit states, or where the 8-bit XLA kernels cannot run (the updates raise
  NotImplementedError)."""
  if not xla.in_xla_context() or not named_scales:
    return None
  if not all(xla.kernels_usable_8bit(scales) for _, scales in named_scales):
    return None
  names = [f"{who}: the 8-bit states of {name!r} ({scales.name})" for name, scales in named_scales]
  return ops.check_8bit_scale_values([scales.read_value() for _, scales in named_scales], names)


def _per_device_components(named_scales):
  """In a strategy's cross-replica context (v1's step under a strategy), a mirrored scale
  variable is checked in each of its components, on their devices."""
  expanded = []
  for name, scales in named_scales:
    components = (scales.values if isinstance(scales, tf.distribute.DistributedValues)
                  else (scales,))
    expanded.extend((name, component) for component in components)
  return expanded


def _check_scales_on_their_devices(scale_variables, pack=None):
  """Check8bitScales over the variables, one op per device they live on (an op reads only its own
  device's variables); the results in the variables' order."""
  by_device = {}
  for i, scales in enumerate(scale_variables):
    by_device.setdefault(scales.device, []).append(i)
  if len(by_device) == 1:
    return ops.check_8bit_scales(pack(scale_variables) if pack is not None
                                 else [scales.handle for scales in scale_variables])
  results, order = [], []
  for device, positions in by_device.items():
    with tf.device(device):
      results.append(ops.check_8bit_scales([scale_variables[i].handle for i in positions]))
    order.extend(positions)
  return tf.gather(tf.concat(results, 0), tf.math.invert_permutation(order))
