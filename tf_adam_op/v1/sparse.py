"""The v1 optimizers' sparse updates: the base class's sparse hooks, and which rows, indices and
rule options the fused sparse op gets."""

import tensorflow as tf

from tf_adam_op import ops
from tf_adam_op._step import apply
from tf_adam_op._step import xla
from tf_adam_op.v1 import stock_dtypes
from tf_adam_op.v1 import xla_composite


def sparse_arguments(values, indices, dtype, *, lazy, v_term_as_written, use_locking, beta2):
  """The sparse op's gradient rows, indices and options for a `dtype` variable.

  Eager runs stock's v term, (g * g) * (1 - beta2), as written, and so does the op. In a graph,
  grappler may rewrite stock's product or constant-fold it as written, depending on the gradient:
  so for float32/float64 (where we match stock bit for bit) the term is built from stock's own TF
  ops (duplicates summed as stock sums them) and handed to the op, and grappler treats both alike.
  Lazy mode has no stock rule to match; half and bfloat16 follow the float32 rule. Under XLA no
  grappler rewrites the graph: the op computes the term as eager does. `v_term_as_written`: where
  there is no stock graph to follow (AMSGrad, AdamWOptimizer) the published rule is the reference.
  """
  options = dict(use_locking=use_locking, lazy=lazy)
  if lazy or tf.executing_eagerly() or xla.in_xla_context() or v_term_as_written:
    return values, indices, options
  if dtype.base_dtype not in (tf.float32, tf.float64):
    return values, indices, dict(options, scale_first=ops.stock_sparse_scales_first())
  summed, unique, v_term = ops.stock_sparse_v_term(values, indices,
                                                   tf.cast(beta2, dtype.base_dtype))
  return summed, unique, dict(options, v_term=v_term)


class SparseUpdates:
  """Mixed into AdamOptimizer: its IndexedSlices updates, one fused sparse op each (the base
  class's hooks; `_adam_slots`, `_scalars`, `_after_checks` and `_decays` are AdamOptimizer's)."""

  # Sparse gradients go to the fused sparse op with their duplicate indices: it sums them itself (in
  # stock's order). Complex variables take stock's path: the base class sums the duplicates.

  def _apply_sparse_duplicate_indices(self, grad, var):
    if stock_dtypes.is_stock_dtype(var):
      return super()._apply_sparse_duplicate_indices(grad, var)
    return self._apply_sparse(grad, var)

  def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices):
    if stock_dtypes.is_stock_dtype(handle):
      return super()._resource_apply_sparse_duplicate_indices(grad, handle, indices)
    return self._resource_apply_sparse(grad, handle, indices)

  def _sparse_arguments(self, values, indices, dtype):
    return sparse_arguments(values, indices, dtype, lazy=self._lazy,
                                   v_term_as_written=self._sparse_v_term_as_written(),
                                   use_locking=self._use_locking, beta2=self._beta2_t)

  def _apply_sparse(self, grad, var):
    if stock_dtypes.is_stock_dtype(var):
      return stock_dtypes.apply_sparse(self, grad, var)
    values, indices, options = self._sparse_arguments(grad.values, grad.indices, var.dtype)
    m, v, vhat = self._adam_slots(var, ref=True)
    return apply.sparse(var, m, v, self._scalars(var.dtype), values, indices, vhat=vhat,
                        decays=self._decays(var), ref=True, **options).op

  def _resource_apply_sparse(self, grad, var, indices):
    if stock_dtypes.is_stock_dtype(var):  # (under XLA its values after the step's checks)
      return stock_dtypes.resource_apply_sparse(self, self._after_checks(grad), var, indices)
    if self._has_8bit_states(var):
      return self._apply_8bit_sparse(grad, var, indices)
    if xla.in_xla_context() and not xla.kernels_usable([var]):
      return xla_composite.sparse_update(var, self._adam_slots(var, ref=True), self._scalars(var.dtype),
                                         grad, indices, self._decays(var), self._use_locking,
                                         self._lazy)
    values, indices, options = self._sparse_arguments(grad, indices, var.dtype)
    m, v, vhat = self._adam_slots(var)
    return apply.sparse(var.handle, m, v, self._checked_scalars(var.dtype), values, indices,
                        vhat=vhat, decays=self._decays(var), **options)
