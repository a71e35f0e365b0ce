"""Every copy of the vectorised CPU loop (AVX-512, AVX2, baseline SSE2) gives the NumPy reference's
bits, special values included, and so does the 8-bit codec each one runs (AVX-512 or portable). Each
runs in its own process, chosen with TF_ADAM_OP_CPU_SIMD; a copy this CPU cannot run is skipped,
with the reason."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "scripts", "simd_variant.py")


def _cpu_flags():
  try:
    with open("/proc/cpuinfo") as f:
      return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
  except (OSError, StopIteration):
    return set()


@pytest.mark.parametrize("simd, flag", [("avx512f", "avx512f"), ("avx2", "avx2"),
                                        ("baseline", None)])
def test_every_simd_copy_gives_the_reference_bits(tmp_path, simd, flag):
  if flag is not None and flag not in _cpu_flags():
    pytest.skip(f"this CPU has no {flag}")
  result = subprocess.run([sys.executable, SCRIPT, HERE], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "TF_ADAM_OP_CPU_SIMD": simd,
                               "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  reported, codec, status = result.stdout.split()[-3:]
  assert reported == simd and status == "OK"
  # The 8-bit codec follows the instruction set: AVX-512 with the extensions it needs, else the
  # portable one (no other choice is made silently).
  avx512_codec = simd == "avx512f" and {"avx512bw", "avx512dq", "avx512vbmi"} <= _cpu_flags()
  assert codec == ("avx512" if avx512_codec else "portable")
