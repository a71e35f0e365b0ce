"""Which path a v1 step's updates take: the multi-tensor ops, one op each, or stock's."""

from tensorflow.python.distribute import distribute_lib

from tf_adam_op._step import xla
from tf_adam_op.v1 import stock_dtypes


def fuses_here(fused, variables):
  """Whether a step of `variables` built now uses the multi-tensor ops (`fused`, the option):
  they need a step built here, on one machine, and under XLA the ops' XLA kernels."""
  return (fused and not distribute_lib.has_strategy()
          and (not xla.in_xla_context() or xla.kernels_usable(variables)))


def held_for_finish(var, fused, repeated):
  """Whether the dense update of `var` is made in _finish: grouped when fused; and under XLA (with
  the kernels, no strategy) unfused too, because only there are the updates made to depend by
  data on the step's sparse ones (step.apply_groups), so a failing sparse op stops the step before
  any dense update is written. Not a variable the step gives more than once (its id in
  `repeated`): its updates are made in the order given."""
  if id(var) in repeated:
    return False
  if stock_dtypes.is_stock_dtype(var):  # stock's op, held back under XLA only
    return _under_xla_here()
  return fuses_here(fused, [var]) or (_under_xla_here() and xla.kernels_usable([var]))


def _under_xla_here():
  """Whether the step is built under XLA, on one machine (no strategy)."""
  return xla.in_xla_context() and not distribute_lib.has_strategy()


def held_8bit_for_finish(var, fused, repeated):
  """Whether the dense update of `var`, which has 8-bit states, is made in _finish, grouped into
  one multi-tensor op per (device, dtype, decays) group there: where the float states' are
  grouped (fuses_here: `fused`, one machine), and under XLA (no strategy) also unfused, made to
  depend by data on the step's sparse updates as the float states' groups are (held_for_finish).
  Elsewhere (a strategy; unfused outside XLA) one op each, made at once. Not a variable the step
  gives more than once: its updates are made in the order given."""
  return id(var) not in repeated and (fuses_here(fused, [var]) or _under_xla_here())
