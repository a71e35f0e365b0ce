"""Steps under XLA (tf.function(jit_compile=True), Keras's jit_compile): which path, and ordering.

Where the XLA kernels are loaded (_loader.xla_kernels: TF 2.21 builds) and the variables are on the
CPU (or on a GPU, in a build with the CUDA kernels), the optimizers use the ops themselves under
XLA: each compiles to one custom call into the fused loop (cc/xla), the multi-tensor update as
ResourceApplyAdamV1MultiUnpacked, so a step gives the bits it gives outside XLA. Otherwise (no XLA
kernels, a GPU without CUDA kernels, or TF_ADAM_OP_XLA_KERNELS=0 in the environment) the step is
the host's own XLA path where it is the rule, and the composite (composite.py) for the rest,
chosen explicitly by kernels_usable.

XLA orders by data only: after_updates is how a step's later writes are made to wait for the
updates that may fail while they run, after_values how they wait for the step's checks.
"""

import os

import tensorflow as tf
from tensorflow.python.ops import control_flow_util
from tensorflow.python.ops import gen_resource_variable_ops

from tf_adam_op import _loader

# Set to 0 to make every XLA step take the composite path (e.g. to get stock's XLA numbers).
KERNELS_ENVIRONMENT_VARIABLE = "TF_ADAM_OP_XLA_KERNELS"


def in_xla_context():
  """Whether ops built now will be compiled by XLA (e.g. inside tf.function(jit_compile=True))."""
  return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def kernels_enabled():
  """Whether XLA steps may use the ops' XLA kernels: loaded, and not turned off by the variable."""
  if os.environ.get(KERNELS_ENVIRONMENT_VARIABLE, "1").strip().lower() in ("0", "false", "no"):
    return False
  return _loader.xla_kernels()[0]


def describe():
  """One line for `tf-adam-op info`: which path XLA steps take in this process, and why."""
  loaded, why = _loader.xla_kernels()
  if not loaded:
    return f"XLA kernels: {why}; XLA steps use the composite path"
  if not kernels_enabled():
    return (f"XLA kernels: loaded, turned off by {KERNELS_ENVIRONMENT_VARIABLE}=0; XLA steps use "
            "the composite path")
  from tf_adam_op import _build_info
  gpu = ("GPU custom calls built, not yet run on a GPU" if _build_info.CUDA_KERNELS_BUILT
         else "no GPU custom calls: GPU variables take the composite path (8-bit states: "
               "refused)")
  return f"XLA kernels: loaded (CPU custom calls; {gpu}); XLA steps run the fused ops"


def _has_handler(var):
  """Whether the custom calls have a handler where `var` is: the CPU, or a GPU when the CUDA kernels
  are built (their XLA handlers are compiled with them)."""
  device = getattr(var, "device", None) or ""
  device_type = tf.DeviceSpec.from_string(device).device_type
  if device_type in (None, "CPU"):
    return True
  from tf_adam_op import _build_info
  return device_type == "GPU" and _build_info.CUDA_KERNELS_BUILT


def kernels_usable(variables):
  """Whether an XLA step of these variables uses the ops (their XLA kernels) rather than the
  composite."""
  return kernels_enabled() and all(_has_handler(var) for var in variables)


def kernels_usable_8bit(var):
  """Whether an XLA step of `var` with 8-bit states can run the 8-bit ops' XLA kernels (a handler
  where `var` is, as for the float ops). Where not, the step is refused (there is no composite of
  the 8-bit rule)."""
  return kernels_enabled() and _has_handler(var)


def check_8bit_usable(var, who):
  """NotImplementedError, under XLA, where the 8-bit ops' XLA kernels cannot run `var`'s step."""
  if in_xla_context() and not kernels_usable_8bit(var):
    raise NotImplementedError(
        f"{who}: under XLA, 8-bit states need the ops' XLA kernels where the variable is "
        f"({var.name!r} on {getattr(var, 'device', '') or 'the default device'}: {describe()}); "
        "run the step without jit_compile, or with state_bits=32 (docs/state_8bit.md)")


def after_updates(update_ops):
  """A function returning its tensors unchanged, but computed after every one of `update_ops` has
  run under XLA (after_values of a value each op wrote: its first variable, read after it).

  Why: tf2xla drops control dependencies between ops, XLA orders only by data, and an optimization
  barrier does not help (XLA's CPU runtime orders by buffers, not by the control edges the barrier
  becomes). A step whose update fails while it runs (a sparse index out of range, found by the
  handler) stops the executable at that custom call; without a data dependency the beta powers'
  advance might already have run, and the failed step would leave them advanced.
  """
  written = []
  for op in update_ops:
    op = getattr(op, "op", op)
    if op.inputs and op.inputs[0].dtype == tf.resource and "T" in op.node_def.attr:
      value = gen_resource_variable_ops.read_variable_op(op.inputs[0], op.get_attr("T"))
      written.append(tf.reshape(value, [-1])[:1])  # empty for an empty variable
  return after_values(written)


def after_values(values):
  """A function returning its tensors unchanged, but computed only once every one of `values` is
  (under XLA: the ops that compute them ran, and succeeded): a conditional whose predicate reads
  the values and is always true. The predicate is a value read, not arithmetic on the tensors, so
  they pass exactly, every bit (a product by a check's 1.0 would flush a denormal where the CPU
  flushes them). `values`: numeric tensors (a step's checks, a value an update wrote); none: the
  function returns its tensors as they are."""
  values = [tf.reshape(value, [-1]) for value in values]

  def after(*tensors):
    if not values:
      return tensors
    # Always true (every number is finite, infinite or NaN), but not before the ops ran: XLA
    # cannot fold it. The branches differ, so XLA cannot merge them and drop the predicate (with
    # the same identity in both it may, and then order the rest before a failing op: found by an
    # outside check with Keras's EMA in the step); the false one is never taken.
    first = tf.concat([tf.cast(value, tf.float32) for value in values], 0)
    predicate = tf.reduce_all(tf.math.is_finite(first) | tf.math.is_inf(first)
                              | tf.math.is_nan(first))
    same = lambda: [tf.identity(t) for t in tensors]
    never = lambda: [tf.zeros_like(t) for t in tensors]
    return tuple(tf.cond(predicate, same, never))
  return after
