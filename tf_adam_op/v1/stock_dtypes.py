"""Complex variables: updated by stock tf.compat.v1.train.AdamOptimizer's own code.

Stock Adam trains complex64/complex128 variables (its ApplyAdam kernels are registered for them,
on CPU, GPU and under XLA; TensorFlow's compiler/tests/adam_test.py runs them). The fused ops
compute real dtypes only: Adam's rule on complex numbers (m, v and sqrt(v) complex, v of g * g,
not |g|^2) is stock's own and rarely wanted, so rather than a second, complex rule in the kernels,
AdamOptimizer hands these variables to stock's methods, called on itself with the same arguments
(its hyperparameter tensors, slots and beta powers have stock's names): stock's numbers by
construction, in eager, graph and XLA steps. The choice is explicit (`is_stock_dtype`), and tested
against stock (tests/test_complex_variables.py).

AMSGrad and AdamWOptimizer's weight decay have no stock kernel for complex variables; those
optimizers refuse them (ValueError, see docs/errors.md).
"""

import tensorflow as tf

_STOCK = tf.compat.v1.train.AdamOptimizer
STOCK_DTYPES = (tf.complex64, tf.complex128)


def is_stock_dtype(var):
  return var.dtype.base_dtype in STOCK_DTYPES


def apply_dense(opt, grad, var):
  return _STOCK._apply_dense(opt, grad, var)


def resource_apply_dense(opt, grad, var):
  return _STOCK._resource_apply_dense(opt, grad, var)


def apply_sparse(opt, grad, var):
  """Stock's sparse update of a ref variable (stock's _apply_sparse, with its scatter-add; the
  indices deduplicated by the base class, as stock's are)."""
  scatter_add = lambda x, i, v: tf.compat.v1.scatter_add(x, i, v, use_locking=opt._use_locking)
  return _STOCK._apply_sparse_shared(opt, grad.values, var, grad.indices, scatter_add)


def resource_apply_sparse(opt, grad, var, indices):
  """Stock's sparse update of a resource variable (stock's _resource_apply_sparse, whose helper
  _apply_sparse_shared is called here with stock's scatter-add)."""
  scatter_add = lambda x, i, v: _STOCK._resource_scatter_add(opt, x, i, v)
  return _STOCK._apply_sparse_shared(opt, grad, var, indices, scatter_add)


def apply_held_back(opt, pairs, update_ops, after_updates):
  """Under XLA: stock's dense updates of `pairs`, their gradients made to depend by data on the
  step's other updates (`after_updates`: _step/xla.after_updates)."""
  with tf.control_dependencies(update_ops):
    after = after_updates(update_ops)
  grads = after(*[g for g, _ in pairs])
  return [resource_apply_dense(opt, g, v) for g, (_, v) in zip(grads, pairs)]
