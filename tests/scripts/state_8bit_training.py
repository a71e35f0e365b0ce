"""Trains two real models with float32 and with 8-bit optimizer states (tf_adam_op.keras.Adam,
state_bits=32 and 8) and compares their losses: a character-level LSTM language model on the text
that ships with Python (pydoc_data.topics), and an embedding model of synthetic user-item ratings
with a known low-rank structure (dense and lazy Adam). Writes a JSON of the curves and a PNG.

  python tests/scripts/state_8bit_training.py --steps 400 --out docs/images/state_8bit_training

The short version of each run is a test (tests/test_state_8bit_training.py)."""

import argparse
import json

import numpy as np


def text_batches(steps, batch=32, length=64, seed=0):
  """(inputs, targets) of character ids from pydoc_data.topics, and the vocabulary size."""
  from pydoc_data import topics
  text = "".join(topics.topics[k] for k in sorted(topics.topics))
  chars = sorted(set(text))
  ids = np.array([chars.index(c) for c in text], np.int32)
  rng = np.random.default_rng(seed)
  starts = rng.integers(0, len(ids) - length - 1, size=(steps, batch))
  windows = ids[starts[..., None] + np.arange(length + 1)]
  return windows[..., :-1], windows[..., 1:], len(chars)


def language_model(vocab):
  import keras
  return keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab, 64),
                           keras.layers.LSTM(256, return_sequences=True),
                           keras.layers.Dense(vocab)])


def ratings(steps, batch=256, users=2000, items=1000, rank=8, seed=0):
  """Batches of (user, item) -> rating = <u, i> + noise: a rank-8 structure a model can find."""
  rng = np.random.default_rng(seed)
  u, i = rng.standard_normal((users, rank)), rng.standard_normal((items, rank))
  who = rng.integers(0, users, (steps, batch))
  what = rng.integers(0, items, (steps, batch))
  target = (u[who] * i[what]).sum(-1) / np.sqrt(rank) + 0.1 * rng.standard_normal((steps, batch))
  return np.stack([who, what], -1).astype(np.int32), target.astype(np.float32)[..., None], (
      users, items)


def embedding_model(users, items, width=32):
  import keras
  pair = keras.Input((2,), dtype="int32")
  user = keras.layers.Embedding(users, width)(pair[:, 0])
  item = keras.layers.Embedding(items, width)(pair[:, 1])
  return keras.Model(pair, keras.ops.sum(user * item, axis=-1, keepdims=True))


def train(make_model, batches, loss, bits, lazy=False, lr=1e-3, seed=1):
  """Per-step losses of the model trained with tf_adam_op.keras.Adam(state_bits=bits)."""
  import keras
  import tf_adam_op.keras
  keras.utils.set_random_seed(seed)
  model = make_model()
  model.compile(tf_adam_op.keras.Adam(lr, state_bits=bits, lazy=lazy), loss, jit_compile=False)
  inputs, targets = batches
  return [float(model.train_on_batch(x, y)) for x, y in zip(inputs, targets)]


def runs(steps):
  """{name: {"32": losses, "8": losses}} for the three comparisons."""
  import keras
  x, y, vocab = text_batches(steps)
  lm_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  pairs, target, (users, items) = ratings(steps)
  results = {}
  for name, make, batches, loss, lazy, lr in [
      ("lstm language model", lambda: language_model(vocab), (x, y), lm_loss, False, 3e-3),
      ("embedding model", lambda: embedding_model(users, items), (pairs, target), "mse", False,
       1e-2),
      ("embedding model, lazy", lambda: embedding_model(users, items), (pairs, target), "mse",
       True, 1e-2)]:
    results[name] = {str(bits): train(make, batches, loss, bits, lazy, lr) for bits in (32, 8)}
  return results


def final_loss(losses, window=20):
  return float(np.mean(losses[-window:]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--out", default="state_8bit_training", help="path without extension")
  args = parser.parse_args()
  results = runs(args.steps)
  summary = {}
  for name, curves in results.items():
    f32, f8 = final_loss(curves["32"]), final_loss(curves["8"])
    summary[name] = dict(float32=f32, eight_bit=f8, relative=f8 / f32 - 1)
    print(f"{name}: final loss (mean of the last 20 steps) float32 {f32:.4f}, 8-bit {f8:.4f} "
          f"({100 * (f8 / f32 - 1):+.2f}%)")
  with open(args.out + ".json", "w") as f:
    json.dump(dict(steps=args.steps, summary=summary, curves=results), f)
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
  for axis, (name, curves) in zip(axes, results.items()):
    for bits, style in (("32", "-"), ("8", "--")):
      smooth = np.convolve(curves[bits], np.ones(10) / 10, mode="valid")
      axis.plot(smooth, style, label=f"{'float32' if bits == '32' else '8-bit'} states")
    axis.set_title(f"{name}\n{100 * summary[name]['relative']:+.2f}% final loss", fontsize=10)
    axis.set_xlabel("step")
    axis.set_yscale("log")
    axis.legend()
  axes[0].set_ylabel("training loss (10-step mean)")
  figure.tight_layout()
  figure.savefig(args.out + ".png", dpi=110)
  print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
  main()
