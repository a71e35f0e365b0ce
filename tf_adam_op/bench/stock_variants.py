"""Stock equivalents of AMSGrad and AdamW, built from stock TensorFlow's own pieces: what the
benchmark compares ours with, and the tests' stock-built references.

TF 2.21 has the AMSGrad kernel (ResourceApplyAdamWithAmsgrad) but no optimizer around it, and no
AdamW at all (tf.contrib and TF Addons are gone). These are the optimizers those users had, written
the way they were written, on stock's v1 AdamOptimizer:
- StockAmsgrad: stock AdamOptimizer whose dense update is stock's ApplyAdamWithAmsgrad kernel with a
  "vhat" slot (what tf_keras's Adam(amsgrad=True) runs per variable).
- ContribAdamW: tf.contrib.opt.AdamWOptimizer's DecoupledWeightDecayExtension over stock
  AdamOptimizer: `var.assign_sub(weight_decay * var)` as a control dependency of each update; for
  sparse gradients, TF Addons' gather / multiply / scatter_add of the batch's rows. One edge more
  than contrib had: the decay waits for the gradient. In a TF1 graph contrib's decay depended on
  nothing but var, so it could run before the gradient's own reads of a ref variable, which then
  saw the decayed value (a race, seen here as a different result in one run of several).
"""

import numpy as np
import tensorflow as tf
from tensorflow.python.distribute import distribute_utils
from tensorflow.python.ops import gen_training_ops


class StockAmsgrad(tf.compat.v1.train.AdamOptimizer):

  def _create_slots(self, var_list):
    super()._create_slots(var_list)
    for var in var_list:
      self._zeros_slot(var, "vhat", self._name)

  def _resource_apply_dense(self, grad, var):
    beta1_power, beta2_power = self._get_beta_accumulators()
    dtype = var.dtype.base_dtype
    cast = lambda x: tf.cast(x, dtype)
    return gen_training_ops.resource_apply_adam_with_amsgrad(
        var.handle, self.get_slot(var, "m").handle, self.get_slot(var, "v").handle,
        self.get_slot(var, "vhat").handle, cast(beta1_power), cast(beta2_power),
        cast(self._lr_t), cast(self._beta1_t), cast(self._beta2_t), cast(self._epsilon_t), grad,
        use_locking=self._use_locking)

  def _apply_dense(self, grad, var):
    raise NotImplementedError("stock has no AMSGrad kernel for ref variables")


class ContribAdamW(tf.compat.v1.train.AdamOptimizer):

  def __init__(self, weight_decay, *args, decay_var_list=None, **kwargs):
    kwargs.setdefault("name", "AdamW")
    super().__init__(*args, **kwargs)
    self._weight_decay = weight_decay
    self._decay_var_list = decay_var_list

  def _decays(self, var):
    # By identity (TF2 variables compare elementwise); a mirrored variable's component counts as it.
    container = distribute_utils.value_container(var)
    return not self._decay_var_list or any(var is v or container is v for v in self._decay_var_list)

  def _prepare(self):
    super()._prepare()
    weight_decay = self._call_if_callable(self._weight_decay)
    self._weight_decay_t = tf.convert_to_tensor(weight_decay, name="weight_decay")

  def _decay_factor(self, var):
    """Contrib's `self._weight_decay * var`: a number converts to var's dtype directly."""
    dtype = var.dtype.base_dtype
    if isinstance(self._weight_decay, (int, float, np.floating, np.integer)):
      return tf.constant(self._weight_decay, dtype)
    return tf.cast(self._weight_decay_t, dtype)

  def _decay_op(self, var, grad):
    if not self._decays(var):
      return tf.no_op()
    with tf.control_dependencies([grad]):
      return var.assign_sub(self._decay_factor(var) * var, self._use_locking)

  def _decay_rows_op(self, var, indices, grad):
    if not self._decays(var):
      return tf.no_op()
    with tf.control_dependencies([grad]):
      rows = tf.gather(var, indices)
      update = -self._decay_factor(var) * rows
      return var.scatter_add(tf.IndexedSlices(update, indices))

  def _apply_dense(self, grad, var):
    with tf.control_dependencies([self._decay_op(var, grad)]):
      return super()._apply_dense(grad, var)

  def _resource_apply_dense(self, grad, var):
    with tf.control_dependencies([self._decay_op(var, grad)]):
      return super()._resource_apply_dense(grad, var)

  def _resource_apply_sparse(self, grad, var, indices):
    with tf.control_dependencies([self._decay_rows_op(var, indices, grad)]):
      return super()._resource_apply_sparse(grad, var, indices)
