"""What the XLA kernel tests share: the custom calls' names in HLO, the step count, twin variables."""

import tensorflow as tf


DENSE_TARGET = 'custom_call_target="tf_adam_op_dense_adam"'
SPARSE_TARGET = 'custom_call_target="tf_adam_op_sparse_adam"'
STEPS = 3


def _hlo(fn, *args):
  return fn.experimental_get_compiler_ir(*args)(stage="hlo")


def _twins(values):
  """Two sets of variables with the same values: one for the XLA step, one for the op's."""
  return ([tf.Variable(x) for x in values], [tf.Variable(x) for x in values])
