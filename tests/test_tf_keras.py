"""tf_keras (Keras 2) accepts v1 optimizers: compile + fit with ours gives the weights of the same run
with stock v1 Adam, bit for bit. tf_keras comes with the `test` extra (and the `keras` extra)."""

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras", reason="tf_keras is installed by the test extra")

from helpers import OPTIMIZERS, assert_bitwise_equal


def _fit(cls, sparse):
  rng = np.random.default_rng(7)
  if sparse:  # an Embedding gives IndexedSlices gradients
    x = rng.integers(0, 20, size=(64, 4))
    layers = [tf_keras.layers.Embedding(20, 3), tf_keras.layers.Flatten(), tf_keras.layers.Dense(1)]
  else:
    x = rng.standard_normal((64, 5)).astype(np.float32)
    layers = [tf_keras.layers.Dense(8, activation="tanh"), tf_keras.layers.Dense(1)]
  y = rng.standard_normal((64, 1)).astype(np.float32)
  model = tf_keras.Sequential([tf_keras.Input(x.shape[1:], dtype=x.dtype)] + layers)
  initial = [np.linspace(-0.5, 0.5, w.size, dtype=np.float32).reshape(w.shape)
             for w in model.get_weights()]
  model.set_weights(initial)
  model.compile(optimizer=cls(0.01), loss="mse")
  model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
  weights = model.get_weights()
  assert not any(np.array_equal(a, b) for a, b in zip(weights, initial))  # it trained
  return weights


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "embedding"])
def test_fit_with_ours_equals_fit_with_stock_v1_adam(sparse):
  ours, stock = _fit(OPTIMIZERS["ours"], sparse), _fit(OPTIMIZERS["stock"], sparse)
  assert_bitwise_equal(ours, stock, names=[f"weight[{i}]" for i in range(len(ours))])
