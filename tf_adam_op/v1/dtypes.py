"""Which variable dtypes the v1 optimizers update, and the dtype checks of a step's pairs."""

import tensorflow as tf

from tf_adam_op._step.grouping import FUSED_DTYPES
from tf_adam_op.v1 import stock_dtypes


def valid_dtypes(stock_rule_allowed):
  """The fused ops' dtypes, and complex ones (stock's own kernel: stock_dtypes.py) where stock has
  a rule for them (not with AMSGrad or a weight decay)."""
  return FUSED_DTYPES + stock_dtypes.STOCK_DTYPES if stock_rule_allowed else FUSED_DTYPES


def check_variable_dtypes(grads_and_vars, supported, who):
  """ValueError for a variable of a dtype this optimizer does not update (`supported`);
  InvalidArgumentError for a gradient whose dtype is not its variable's (stock's kernel aborts the
  process on a dense one)."""
  for grad, var in grads_and_vars:
    dtype = getattr(var, "dtype", None)
    if dtype is None:
      continue
    if dtype.base_dtype not in supported:
      why = ""
      if dtype.base_dtype in stock_dtypes.STOCK_DTYPES:
        why = (" (complex variables take stock Adam's kernel, which has no AMSGrad and no weight "
               "decay)")
      raise ValueError(
          f"{who} cannot update variable {getattr(var, 'name', var)!r} of dtype "
          f"{dtype.base_dtype.name}: supported dtypes are "
          f"{', '.join(d.name for d in supported)}{why}")
    grad_dtype = getattr(grad, "dtype", None)
    if grad_dtype is not None and tf.as_dtype(grad_dtype).base_dtype != dtype.base_dtype:
      kind = "IndexedSlices gradient" if isinstance(grad, tf.IndexedSlices) else "gradient"
      grad_name = getattr(grad, "name", None)  # graph tensors have one, eager ones do not
      if grad_name:
        kind += f" {grad_name!r}"
      raise tf.errors.InvalidArgumentError(
          None, None,
          f"{who}: the {kind} for variable "
          f"{getattr(var, 'name', var)!r} has dtype {tf.as_dtype(grad_dtype).name}, but the "
          f"variable is {dtype.base_dtype.name}: a gradient must have its variable's dtype")


def all_eager_variables(grads_and_vars):
  """Whether every variable is an eager (TF2) resource variable, e.g. captured by a tf.function."""
  return all(not getattr(var, "_in_graph_mode", True) for _, var in grads_and_vars)
