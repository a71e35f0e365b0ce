"""Real models trained with 8-bit states end within 1% of the float32 states' loss: the short runs
of tests/scripts/state_8bit_training.py (docs/state_8bit.md has the long ones and their curves)."""

import os
import sys

import pytest

keras = pytest.importorskip("keras")
if not keras.__version__.startswith("3."):
  pytest.skip(f"tf_adam_op.keras needs Keras 3, found {keras.__version__}", allow_module_level=True)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts"))
import state_8bit_training as training  # noqa: E402

STEPS = 60


@pytest.mark.parametrize("lazy", [False, True], ids=["dense", "lazy"])
def test_embedding_model(lazy):
  pairs, target, (users, items) = training.ratings(STEPS * 3)
  losses = {bits: training.final_loss(training.train(
      lambda: training.embedding_model(users, items), (pairs, target), "mse", bits, lazy, 1e-2))
            for bits in (32, 8)}
  assert abs(losses[8] / losses[32] - 1) <= 0.01, losses


def test_lstm_language_model():
  x, y, vocab = training.text_batches(STEPS)
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  losses = {bits: training.final_loss(training.train(
      lambda: training.language_model(vocab), (x, y), loss, bits, lr=3e-3)) for bits in (32, 8)}
  assert abs(losses[8] / losses[32] - 1) <= 0.01, losses
