"""The rows of an IndexedSlices gradient that Keras's update keeps (docs/keras.md, "IndexedSlices").

Keras's update_step makes an IndexedSlices gradient dense (TensorFlow's IndexedSlices conversion,
an unsorted_segment_sum), which drops the row of a negative index in every mode, and under XLA
also the row of an index past the variable's last row (eagerly and in graphs that one is its
InvalidArgumentError). What Keras accepts is Keras's decision: for Keras's rule (lazy=False) the
fused op gets the rows Keras keeps, made here after Keras's own code has seen the gradient (its
clipping norms count every row, as in Keras). Lazy rows (lazy=True) have no Keras rule: there
every index must be in range (docs/errors.md), as in TensorFlow's own sparse updates.
"""

import tensorflow as tf

from tf_adam_op._step import checks
from tf_adam_op._step import xla


def keras_kept_rows(grad, var):
  """`grad` (an IndexedSlices for `var`, Keras's rule) with only the rows Keras's densification
  keeps. Eagerly and in graphs the others are removed (an index past the last row is left for the
  step's check to refuse, as Keras's conversion refuses it). Under XLA, which has no shapes that
  depend on data, each dropped row becomes a row of zeros at index 0: the dense rule sums the rows
  of an index from +0.0, so adding +0.0 changes no bit of row 0's gradient or of its sum of
  squares. (A variable with no rows under XLA: below.)"""
  indices, values = grad.indices, grad.values
  if not tf.TensorShape(values.shape[:1]).is_compatible_with(indices.shape):
    return grad  # not one row per index: the op's own shape error, of Keras's type in each mode
  if xla.in_xla_context():
    rows = var.shape[0]
    if rows == 0:
      # Keras's XLA step refuses any row of a variable with no rows (XLA's scatter into a
      # dimension of size zero; so does the op's kernel), but for indices it folds as constants
      # that are all negative: every row dropped, accepted.
      static = tf.get_static_value(indices)
      if static is not None and (static < 0).all():
        return tf.IndexedSlices(values[:0], indices[:0], grad.dense_shape)
      return grad
    rows = tf.cast(checks.variable_rows(var, indices.dtype), indices.dtype)
    keep = tf.logical_and(indices >= 0, indices < rows)
    row_keep = tf.reshape(keep, [-1] + [1] * (values.shape.rank - 1))
    return tf.IndexedSlices(tf.where(row_keep, values, tf.zeros_like(values)),
                            tf.where(keep, indices, tf.zeros_like(indices)), grad.dense_shape)
  keep = indices >= 0
  if tf.executing_eagerly() and bool(tf.reduce_all(keep)):
    return grad  # (the usual step: nothing to drop, nothing copied)
  return tf.IndexedSlices(tf.boolean_mask(values, keep), tf.boolean_mask(indices, keep),
                          grad.dense_shape)
