"""The 8-bit states against bitsandbytes' CPU Adam8bit (0.50.2): what it did on fixed inputs is in
tests/data/bnb_adam8bit.npz (made by tests/scripts/bnb_reference.py in a side venv; bitsandbytes
is never a dependency). Same maps, same layout; our codes are the nearest ones, bitsandbytes' CPU
quantizer rounds through a 65,536-bin table, and every code where the two differ is one of those
(docs/state_8bit.md, "bitsandbytes")."""

import os

import numpy as np
import pytest
import tensorflow as tf

import state_8bit_reference as ref
import tf_adam_op
from tf_adam_op import state_8bit

DATA = np.load(os.path.join(os.path.dirname(__file__), "data", "bnb_adam8bit.npz"))
STEPS = 5


def bnb_table_codes(normalized, book):
  """bitsandbytes' CPU quantizer (csrc/cpu_ops.cpp): 65,536 bins over [-1, 1], each holding the
  code nearest its centre."""
  mids = ref.midpoints(book)
  centres = (np.float32(-1) + (np.float32(2) * np.arange(65536, dtype=np.float32))
             / np.float32(65535)).astype(np.float32)
  table = np.searchsorted(mids, centres, side="left")
  index = ((np.clip(normalized, -1, 1) + np.float32(1)) * np.float32(0.5) * np.float32(65535)
           + np.float32(0.5)).astype(np.uint16)
  return table[index]


def bnb_step_floats(k):
  """bitsandbytes' m and v of step k before they are quantized: its rule as torch's CPU kernels
  round it, m.mul_(beta1).add_(g, alpha=1 - beta1) and v.mul_(beta2).addcmul_(g, g, value=1 -
  beta2), each add a fused multiply-add (one rounding; computed here in float64, which is exact
  for the product of two float32s and then rounds once)."""
  shape = DATA["param0"].shape
  if k == 1:
    m = v = np.zeros(shape[0] * shape[1], np.float32)
  else:
    m = ref.decode(DATA[f"state1_{k - 1}"], DATA[f"absmax1_{k - 1}"], ref.SIGNED)
    v = ref.decode(DATA[f"state2_{k - 1}"], DATA[f"absmax2_{k - 1}"], ref.UNSIGNED)
  g = DATA["grads"][k - 1].reshape(-1)
  f32, f64 = np.float32, np.float64
  m = f64((m * f32(0.9)).astype(f32)) + f64(f32(1 - 0.9)) * f64(g)
  v = f64((v * f32(0.999)).astype(f32)) + f64((f32(1 - 0.999) * g).astype(f32)) * f64(g)
  return m.astype(f32), v.astype(f32)


def test_same_maps():
  assert str(DATA["bnb_version"]) == "0.50.2"
  np.testing.assert_array_equal(DATA["qmap1"], state_8bit.dynamic_map(True))
  np.testing.assert_array_equal(DATA["qmap2"], state_8bit.dynamic_map(False))


@pytest.mark.parametrize("k", range(1, STEPS + 1))
def test_codes_equal_bitsandbytes_but_for_its_table(k):
  for floats, number, book, signed in zip(bnb_step_floats(k), (1, 2), (ref.SIGNED, ref.UNSIGNED),
                                          (True, False)):
    theirs = DATA[f"state{number}_{k}"].reshape(-1)
    ours, absmax = state_8bit.quantize(floats, signed)
    np.testing.assert_array_equal(absmax, DATA[f"absmax{number}_{k}"])
    normalized = (floats.reshape(-1, 256) * (np.float32(1) / absmax[:, None])).reshape(-1)
    # Our reading of bitsandbytes is right: its table gives all of its codes.
    np.testing.assert_array_equal(bnb_table_codes(normalized, book), theirs)
    differ = ours != theirs
    assert differ.mean() < 0.05
    # Where they differ ours is the nearer code.
    x = normalized[differ]
    assert np.all(np.abs(book[ours[differ]] - x) <= np.abs(book[theirs[differ]] - x))


def test_states_move_to_and_from_bitsandbytes():
  var = tf.Variable(DATA["param1"])
  opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
  opt.apply_gradients([(tf.zeros_like(var), var)])  # creates the slots
  state = {key: DATA[f"{key}_1"] for key in ("state1", "absmax1", "state2", "absmax2")}
  state_8bit.from_bitsandbytes(opt, var, state)
  back = state_8bit.to_bitsandbytes(opt, var)
  for key, value in state.items():
    np.testing.assert_array_equal(back[key], value)
  values = state_8bit.state_values(opt, var)
  np.testing.assert_array_equal(values["m"].reshape(-1),
                                ref.decode(state["state1"], state["absmax1"], ref.SIGNED))
