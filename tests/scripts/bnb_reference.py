"""Runs bitsandbytes' CPU Adam8bit on fixed inputs and saves what it did, for
tests/test_state_8bit_bitsandbytes.py; run in a side venv with torch and bitsandbytes (never a
dependency of tf_adam_op): python tests/scripts/bnb_reference.py tests/data/bnb_adam8bit.npz

Saved: the maps (qmap1, qmap2), the parameter before, the gradients, and after each step the
parameter and bitsandbytes' state (state1/absmax1: m; state2/absmax2: v). Also, to tell
bitsandbytes' CPU quantizer apart from nearest rounding, its codes for a few fixed values.
"""

import argparse

import numpy as np
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F

SHAPE = (48, 512)  # 24,576 elements: 96 blocks
STEPS = 5


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("out")
  args = parser.parse_args()
  rng = np.random.default_rng(26)
  param0 = rng.normal(size=SHAPE).astype(np.float32)
  grads = [(rng.normal(size=SHAPE) * rng.choice([1e-3, 1.0])).astype(np.float32)
           for _ in range(STEPS)]
  p = torch.nn.Parameter(torch.from_numpy(param0.copy()))
  opt = bnb.optim.Adam8bit([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
  saved = dict(param0=param0, grads=np.stack(grads), bnb_version=np.array(bnb.__version__))
  for k, g in enumerate(grads):
    p.grad = torch.from_numpy(g.copy())
    opt.step()
    state = opt.state[p]
    saved[f"param{k + 1}"] = p.detach().numpy().copy()
    for key in ("state1", "absmax1", "state2", "absmax2"):
      saved[f"{key}_{k + 1}"] = state[key].numpy().copy()
    saved["qmap1"], saved["qmap2"] = state["qmap1"].numpy(), state["qmap2"].numpy()
  probe = np.concatenate([np.linspace(-1, 1, 4001), 10.0 ** -np.linspace(0, 7, 200)])
  probe = probe.astype(np.float32)
  codes, absmax = F.quantize_blockwise(torch.from_numpy(np.concatenate([probe, [1.0]]).astype(
      np.float32)), code=F.create_dynamic_map(signed=True), blocksize=256)
  saved["probe"], saved["probe_codes"] = probe, codes.numpy()[:probe.size]
  np.savez_compressed(args.out, **saved)


if __name__ == "__main__":
  main()
