"""Sparse gradients in graphs match stock whatever grappler does to stock's graph.

Stock's sparse v term is (g * g) * (1 - beta2). Grappler's arithmetic optimizer rewrites that to
g * (g * (1 - beta2)), unless constant folding evaluated it as written first (a literal
IndexedSlices, or the tape gradient of a linear term, is constant-foldable), or the session turned
the arithmetic optimizer off. An earlier version guessed the order and was 1 ulp off for constant-
foldable gradients; now the optimizer builds the term from stock's own ops, so grappler treats
stock's and ours alike. Each case is compared with stock, bit for bit, in tf.function and in a TF1
session (also with the arithmetic optimizer off in the session's ConfigProto).
"""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from helpers import OPTIMIZERS, assert_bitwise_equal

ROWS, COLS, STEPS = 40, 6, 5
INDICES = np.array([3, 17, 3, 0, 39, 17, 3], np.int32)  # duplicates, unsorted


def _values(dtype):
  return np.random.default_rng(3).standard_normal([len(INDICES), COLS]).astype(dtype) * 0.7


# Each gradient maker: (w, step) -> list of (grad, var), built inside the graph or function.

def _literal_indexed_slices(w, step, dtype):
  return [(tf.IndexedSlices(tf.constant(_values(dtype)), tf.constant(INDICES),
                            tf.constant([ROWS, COLS])), w)]


def _tape_gradient_of_a_linear_term(w, step, dtype):
  coefficients = tf.constant(_values(dtype))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.gather(w, INDICES) * coefficients)
  return [(tape.gradient(loss, w), w)]


def _gradient_of_the_variable_itself(w, step, dtype):  # not foldable: it reads w
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(tf.gather(w, INDICES)))
  return [(tape.gradient(loss, w), w)]


def _constant_values_at_computed_indices(w, step, dtype):
  indices = tf.cast(tf.argsort(tf.reduce_sum(w, axis=1))[:len(INDICES)], tf.int32)
  return [(tf.IndexedSlices(tf.constant(_values(dtype)), indices, tf.constant([ROWS, COLS])), w)]


GRADIENTS = [_literal_indexed_slices, _tape_gradient_of_a_linear_term,
             _gradient_of_the_variable_itself, _constant_values_at_computed_indices]


def _initial(dtype):
  return np.linspace(-1, 1, ROWS * COLS).reshape(ROWS, COLS).astype(dtype)


def _in_tf_function(cls, make_grads, dtype):
  w = tf.Variable(_initial(dtype))
  opt = cls(0.05)
  @tf.function
  def step():
    opt.apply_gradients(make_grads(w, None, dtype))
  for _ in range(STEPS):
    step()
  return [x.numpy() for x in (w, opt.get_slot(w, "m"), opt.get_slot(w, "v"))]


def _in_session(cls, make_grads, dtype, arithmetic_optimizer=True, use_resource=True):
  config = tf.compat.v1.ConfigProto()
  if not arithmetic_optimizer:
    config.graph_options.rewrite_options.arithmetic_optimization = (
        rewriter_config_pb2.RewriterConfig.OFF)
  with tf.Graph().as_default():
    w = tf.compat.v1.get_variable("w", initializer=_initial(dtype), use_resource=use_resource)
    opt = cls(0.05)
    train = opt.apply_gradients(make_grads(w, None, dtype))
    with tf.compat.v1.Session(config=config) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for _ in range(STEPS):
        sess.run(train)
      return sess.run([w, opt.get_slot(w, "m"), opt.get_slot(w, "v")])


# GradientTape cannot watch ref variables, so tf1-ref runs the gradients made without one.
CASES = [(mode, make_grads) for mode in ("tf.function", "tf1-resource", "tf1-ref",
                                         "tf1-arithmetic-optimizer-off")
         for make_grads in GRADIENTS
         if mode != "tf1-ref" or make_grads in (_literal_indexed_slices,
                                                _constant_values_at_computed_indices)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("mode, make_grads", CASES,
                         ids=[f"{m}-{g.__name__.strip('_')}" for m, g in CASES])
def test_sparse_steps_in_graphs_equal_stocks(mode, make_grads, dtype):
  if mode == "tf.function":
    run = lambda cls: _in_tf_function(cls, make_grads, dtype)
  else:
    run = lambda cls: _in_session(cls, make_grads, dtype,
                                  arithmetic_optimizer=mode != "tf1-arithmetic-optimizer-off",
                                  use_resource=mode != "tf1-ref")
  assert_bitwise_equal(run(OPTIMIZERS["ours"]), run(OPTIMIZERS["stock"]))
