"""Checkpoints interchange with stock both ways, under the same names, and a resumed run continues
exactly as an uninterrupted one."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import OPTIMIZERS, assert_bitwise_equal, optimizer_state, random_grads

FIRST, SECOND = 8, 7  # steps before and after the checkpoint


@pytest.fixture
def problem(rng):
  init = rng.standard_normal((6, 4)).astype(np.float32)
  return init, random_grads(rng, init.shape, np.float32, FIRST + SECOND)


def _saver_session(optimizer_cls, init, grads, save_to=None, restore_from=None):
  """Trains `grads` in a TF1 graph; optionally restores first and/or saves at the end."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    var = tf.compat.v1.Variable(init, name="weights", use_resource=False)
    grad_in = tf.compat.v1.placeholder(tf.float32, init.shape)
    opt = optimizer_cls(learning_rate=0.01)
    train_op = opt.apply_gradients([(grad_in, var)])
    saver = tf.compat.v1.train.Saver()
    session.run(tf.compat.v1.global_variables_initializer())
    if restore_from:
      saver.restore(session, restore_from)
    for grad in grads:
      session.run(train_op, {grad_in: grad})
    if save_to:
      saver.save(session, save_to)
    return session.run(optimizer_state(opt, var))


@pytest.mark.parametrize("writer, reader", [("stock", "ours"), ("ours", "stock")])
def test_saver_checkpoints_interchange(tmp_path, problem, writer, reader):
  init, grads = problem
  uninterrupted = _saver_session(OPTIMIZERS["stock"], init, grads)
  path = str(tmp_path / "model")
  _saver_session(OPTIMIZERS[writer], init, grads[:FIRST], save_to=path)
  resumed = _saver_session(OPTIMIZERS[reader], init, grads[FIRST:], restore_from=path)
  assert_bitwise_equal(resumed, uninterrupted)


def test_saver_names_are_stock_names(tmp_path, problem):
  init, grads = problem
  names = {}
  for name, cls in OPTIMIZERS.items():
    _saver_session(cls, init, grads[:1], save_to=str(tmp_path / name))
    names[name] = dict(tf.train.list_variables(str(tmp_path / name)))
  assert names["ours"] == names["stock"]
  assert {"weights", "weights/Adam", "weights/Adam_1", "beta1_power", "beta2_power"} <= set(
      names["ours"])


def _eager_checkpoint_run(optimizer_cls, init, grads, save_to=None, restore_from=None):
  var = tf.Variable(init)
  opt = optimizer_cls(learning_rate=0.01)
  checkpoint = tf.train.Checkpoint(opt=opt, w=var)
  if restore_from:
    # Restored before the slots exist: the restore is deferred until the first step creates them.
    checkpoint.restore(restore_from).assert_existing_objects_matched()
  for grad in grads:
    opt.apply_gradients([(tf.constant(grad), var)])
  saved = checkpoint.save(save_to) if save_to else None
  return [x.numpy() for x in optimizer_state(opt, var)], saved


@pytest.mark.parametrize("writer, reader", [("stock", "ours"), ("ours", "stock")])
def test_object_checkpoints_interchange(tmp_path, problem, writer, reader):
  init, grads = problem
  uninterrupted, _ = _eager_checkpoint_run(OPTIMIZERS["stock"], init, grads)
  _, path = _eager_checkpoint_run(OPTIMIZERS[writer], init, grads[:FIRST],
                                  save_to=str(tmp_path / "ckpt"))
  resumed, _ = _eager_checkpoint_run(OPTIMIZERS[reader], np.zeros_like(init), grads[FIRST:],
                                     restore_from=path)
  assert_bitwise_equal(resumed, uninterrupted)


def test_object_checkpoint_keys_are_stock_keys(tmp_path, problem):
  init, grads = problem
  keys = {}
  for name, cls in OPTIMIZERS.items():
    _, path = _eager_checkpoint_run(cls, init, grads[:1], save_to=str(tmp_path / name))
    keys[name] = dict(tf.train.list_variables(path))
  assert keys["ours"] == keys["stock"]
  assert any(k.startswith("w/.OPTIMIZER_SLOT/opt/m/") for k in keys["ours"])
  assert any(k.startswith("opt/beta1_power/") for k in keys["ours"])
