"""tf_adam_op's CUDA kernels against the NumPy reference, with no TensorFlow: bit for bit in float32
and float64 (the kernels are built with --fmad=false), within one rounding of the storage type in
float16/bfloat16 (computed in float32, rounded once); reruns, streams and launch errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

import reference
from gpu_support import (GPU, HARNESS, Scalars, needs_gpu, needs_harness, numpy_dtype, stream,
                      to_device, to_host, torch)

DTYPES = ["float16", "bfloat16", "float32", "float64"]
HYPER = dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
POWERS = (0.9**3, 0.999**3)


def _compute(dtype_name):
  return "float64" if dtype_name == "float64" else "float32"


def _scalars(dtype_name, powers="float32"):
  return Scalars(*POWERS, *HYPER.values(), compute=_compute(dtype_name), powers=powers)


def _reference_powers(powers="float32"):
  return tuple(np.dtype(powers).type(p) for p in POWERS)


def _state(rng, shape, dtype):
  """var, m, v, grad: random, v positive, none of them zeros (zeros hide unwritten outputs)."""
  var = rng.standard_normal(shape).astype(dtype)
  m = (0.1 * rng.standard_normal(shape)).astype(dtype)
  v = (0.01 + np.abs(0.01 * rng.standard_normal(shape))).astype(dtype)
  grad = rng.standard_normal(shape).astype(dtype)
  return var, m, v, grad


def assert_matches(actual, expected, dtype, what):
  """Bitwise in float32/float64; within one unit in the last place of the storage type otherwise."""
  if dtype.name in ("float32", "float64"):
    bits = np.dtype(f"u{dtype.itemsize}")
    differ = np.flatnonzero(actual.view(bits).ravel() != expected.view(bits).ravel())
    assert not len(differ), f"{what}: {len(differ)} elements differ, first at {differ[:5]}"
  else:
    a, e = actual.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    ulp = np.abs(np.spacing(expected.astype(np.float32).ravel().astype(dtype)).astype(np.float64))
    worst = np.max(np.abs(a - e) / ulp, initial=0.0)
    assert worst <= 1.0, f"{what}: {worst:.2f} units in the last place off"


@pytest.fixture
def rng():
  return np.random.default_rng(2024)


# --- Dense ---------------------------------------------------------------------------------------

@needs_gpu
@pytest.mark.parametrize("nesterov", [False, True], ids=["adam", "nesterov"])
@pytest.mark.parametrize("size", [0, 1, 7, 1023, 2**20 + 3])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_dense_matches_the_reference(rng, dtype_name, size, nesterov):
  dtype = numpy_dtype(dtype_name)
  var, m, v, grad = _state(rng, (size,), dtype)
  d_var, d_m, d_v, d_grad = (to_device(x) for x in (var, m, v, grad))
  scalars = _scalars(dtype_name)
  error = HARNESS.launch_dense(stream(), dtype_name, nesterov, d_var.data_ptr(), d_m.data_ptr(),
                               d_v.data_ptr(), d_grad.data_ptr(), size, scalars.pointers())
  assert error == ""
  torch.cuda.synchronize()
  expected = reference.adam_step(var, m, v, grad, *_reference_powers(), *HYPER.values(),
                                 use_nesterov=nesterov)
  for name, d, e in zip(("var", "m", "v"), (d_var, d_m, d_v), expected):
    assert_matches(to_host(d, dtype), e, dtype, name)


# --- Multi-tensor ------------------------------------------------------------------------------

def _mixed_sizes(rng, count):
  """Sizes from 0 to a few thousand, an empty tensor every 7th, one large one."""
  sizes = rng.integers(1, 5000, count)
  sizes[::7] = 0
  sizes[count // 2] = 2**17 + 5
  return [int(s) for s in sizes]


@needs_gpu
@pytest.mark.parametrize("count", [1, 47, 48, 49, 200, 2000])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_multi_tensor_matches_the_reference(rng, dtype_name, count):
  dtype = numpy_dtype(dtype_name)
  states = [_state(rng, (size,), dtype) for size in _mixed_sizes(rng, count)]
  device = [[to_device(x) for x in state] for state in states]
  scalars = _scalars(dtype_name)
  tensors = [(var.data_ptr(), m.data_ptr(), v.data_ptr(), grad.data_ptr(), var.numel())
             for var, m, v, grad in device]
  assert HARNESS.launch_multi(stream(), dtype_name, False, tensors, scalars.pointers()) == ""
  torch.cuda.synchronize()
  for k, (state, on_device) in enumerate(zip(states, device)):
    expected = reference.adam_step(*state, *_reference_powers(), *HYPER.values())
    for name, d, e in zip(("var", "m", "v"), on_device[:3], expected):
      assert_matches(to_host(d, dtype), e, dtype, f"tensor {k} ({state[0].size} elements) {name}")


# --- Sparse --------------------------------------------------------------------------------------

def _sparse_case(rng, dtype, rows=300, row_size=33, batch=200):
  """Unsorted indices, about a third of them repeated."""
  var, m, v, _ = _state(rng, (rows, row_size), dtype)
  indices = rng.integers(0, rows, batch)
  third = batch // 3
  indices[third:2 * third] = indices[:third]
  rng.shuffle(indices)
  grad = rng.standard_normal((batch, row_size)).astype(dtype)
  return var, m, v, grad, indices


def _launch_sparse(dtype_name, lazy, scale_first, state, with_v_term=False, repeat=1):
  var, m, v, grad, indices = state
  dtype = var.dtype
  c = reference.compute_dtype(dtype)
  v_term = ((grad.astype(c) * grad.astype(c)) * (c(1) - c(HYPER["beta2"]))).astype(dtype) \
      if with_v_term else None
  order, starts, unique_rows = reference.segments(indices)
  d = [to_device(x) for x in (var, m, v, grad)]
  d_v_term = to_device(v_term) if with_v_term else None
  d_order, d_starts, d_unique = (to_device(x) for x in (order, starts, unique_rows))
  summed = torch.empty((2 if with_v_term else 1) * len(unique_rows) * var.shape[1],
                       dtype=torch.float64 if c == np.float64 else torch.float32, device="cuda")
  scalars = _scalars(dtype.name)
  for _ in range(repeat):
    error = HARNESS.launch_sparse(
        stream(), dtype.name, lazy, scale_first, d[0].data_ptr(), d[1].data_ptr(),
        d[2].data_ptr(), var.shape[0], var.shape[1], d[3].data_ptr(),
        d_v_term.data_ptr() if with_v_term else 0, d_order.data_ptr(), d_starts.data_ptr(),
        d_unique.data_ptr(), len(unique_rows), summed.data_ptr(), scalars.pointers())
    assert error == ""
  torch.cuda.synchronize()
  return [to_host(x, dtype) for x in d[:3]], v_term


@needs_gpu
@pytest.mark.parametrize("v_term", [False, True], ids=["v term inside", "v term given"])
@pytest.mark.parametrize("scale_first", [False, True], ids=["stock order", "scale first"])
@pytest.mark.parametrize("lazy", [False, True], ids=["all rows", "lazy"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_sparse_matches_the_reference(rng, dtype_name, lazy, scale_first, v_term):
  dtype = numpy_dtype(dtype_name)
  state = _sparse_case(rng, dtype)
  actual, given = _launch_sparse(dtype_name, lazy, scale_first, state, with_v_term=v_term)
  var, m, v, grad, indices = state
  expected = reference.sparse_step(var, m, v, grad, indices, *_reference_powers(),
                                   *HYPER.values(), lazy=lazy, scale_first=scale_first,
                                   v_term=given)
  for name, a, e in zip(("var", "m", "v"), actual, expected):
    assert_matches(a, e, dtype, name)


@needs_gpu
@pytest.mark.parametrize("lazy", [False, True], ids=["all rows", "lazy"])
def test_sparse_reruns_are_bit_identical(rng, lazy):
  """Duplicates are summed per row in input order, without atomics: the same bits every run."""
  state = _sparse_case(rng, np.dtype(np.float32), rows=2000, row_size=64, batch=4096)
  first, _ = _launch_sparse("float32", lazy, False, state)
  for _ in range(3):
    again, _ = _launch_sparse("float32", lazy, False, state)
    for a, b in zip(first, again):
      assert a.view(np.uint32).tobytes() == b.view(np.uint32).tobytes()


# --- Beta powers ---------------------------------------------------------------------------------

@needs_gpu
@pytest.mark.parametrize("powers", ["float32", "float64"])
@pytest.mark.parametrize("betas", ["float32", "float64"])
def test_advance_powers(powers, betas):
  p, b = torch.float64 if powers == "float64" else torch.float32, \
      torch.float64 if betas == "float64" else torch.float32
  b1p, b2p = (torch.tensor(x, dtype=p, device="cuda") for x in POWERS)
  beta1, beta2 = (torch.tensor(HYPER[k], dtype=b, device="cuda") for k in ("beta1", "beta2"))
  assert HARNESS.launch_advance_powers(stream(), b1p.data_ptr(), b2p.data_ptr(),
                                       powers == "float64", beta1.data_ptr(), beta2.data_ptr(),
                                       betas == "float64") == ""
  torch.cuda.synchronize()
  pt, bt = np.dtype(powers).type, np.dtype(betas).type
  for actual, power, beta in ((b1p, POWERS[0], HYPER["beta1"]), (b2p, POWERS[1], HYPER["beta2"])):
    expected = pt(pt(power) * pt(bt(beta)))  # the beta converted to the powers' type, then *
    assert actual.cpu().numpy().tobytes() == np.array(expected, pt).tobytes()


# --- Past 2^31 elements --------------------------------------------------------------------------

@needs_gpu
def test_dense_update_past_2_31_elements():
  """64-bit indexing: a float32 update of 2^31 + 4099 elements (four arrays, 34 GB), where the
  data repeat every 4099 elements, so the reference is computed on one period."""
  n, period = 2**31 + 4099, 4099
  if GPU and torch.cuda.mem_get_info()[0] < 4 * 4 * n + 2**30:
    pytest.skip("the GPU has too little free memory for four arrays of 2^31 + 4099 floats")
  rng = np.random.default_rng(7)
  pattern = _state(rng, (period,), np.float32)
  arrays = [to_device(x).repeat(n // period + 1)[:n].contiguous() for x in pattern]
  scalars = _scalars("float32")
  assert HARNESS.launch_dense(stream(), "float32", False, *(a.data_ptr() for a in arrays), n,
                              scalars.pointers()) == ""
  torch.cuda.synchronize()
  expected = reference.adam_step(*pattern, *_reference_powers(), *HYPER.values())
  for name, array, e in zip(("var", "m", "v"), arrays[:3], expected):
    for start in (0, 2**31 - period, n - period):  # the first, the one before 2^31 and the last
      offset = start % period
      got = to_host(array[start:start + period], np.dtype(np.float32))
      assert_matches(got, np.roll(e, -offset), np.dtype(np.float32), f"{name} from {start}")
  del arrays


# --- Streams and errors -------------------------------------------------------------------------

@needs_gpu
def test_a_launch_stays_on_its_stream(rng):
  """On a non-default stream: the kernel neither waits for another stream's work (a long sleep
  queued there first is still running when ours is done) nor runs anywhere else (the result is read
  back on our stream alone, right after syncing it: a kernel put on the legacy default stream would
  either wait behind the sleep or not be there yet)."""
  dtype = np.dtype(np.float32)
  var, m, v, grad = _state(rng, (1 << 16,), dtype)
  d = [to_device(x) for x in (var, m, v, grad)]
  scalars = _scalars("float32")
  torch.cuda.synchronize()
  busy, ours = torch.cuda.Stream(), torch.cuda.Stream()
  with torch.cuda.stream(busy):
    torch.cuda._sleep(2_000_000_000)  # about a second of spinning
  assert HARNESS.launch_dense(ours.cuda_stream, "float32", False, *(x.data_ptr() for x in d),
                              var.size, scalars.pointers()) == ""
  assert HARNESS.synchronize_stream(ours.cuda_stream) == ""
  with torch.cuda.stream(ours):
    result = d[0].cpu()  # copied on our stream, which it synchronizes
  assert not busy.query(), "the other stream finished first: something waited for it"
  expected = reference.adam_step(var, m, v, grad, *_reference_powers(), *HYPER.values())
  assert_matches(result.numpy(), expected[0], dtype, "var")
  busy.synchronize()


_BAD_POINTER = """
import sys
sys.path.insert(0, {harness_dir!r})
import adam_gpu_harness as h, torch
s = [torch.tensor(x, device="cuda") for x in (0.5, 0.5, 0.01, 0.9, 0.999, 1e-8)]
scalars = (s[0].data_ptr(), s[1].data_ptr(), False) + tuple(t.data_ptr() for t in s[2:])
bad = 0x10  # not device memory
print("launch:", repr(h.launch_dense(0, "float32", False, bad, bad, bad, bad, 1 << 20, scalars)))
print("sync:", repr(h.synchronize_stream(0)))
print("next launch:", repr(h.launch_dense(0, "float32", False, bad, bad, bad, bad, 8, scalars)))
"""


@needs_gpu
def test_a_bad_pointer_comes_back_as_a_message_not_a_crash():
  """In a child process (an illegal address poisons the CUDA context for the rest of it)."""
  from gpu_support import HARNESS_DIR
  result = subprocess.run([sys.executable, "-c", _BAD_POINTER.format(harness_dir=HARNESS_DIR)],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
  assert lines["launch"] == "''"  # the launch is queued; the fault shows when the stream runs
  assert "illegal" in lines["sync"] or "invalid" in lines["sync"], lines["sync"]
  assert lines["next launch"] != "''"  # the error is reported, not lost


@needs_harness
@pytest.mark.skipif(GPU, reason="checks the no-GPU case")
def test_without_a_gpu_a_launch_returns_cudas_message():
  """Where no GPU is (CI compiles the harness and runs this), a launch returns CUDA's message
  ("no CUDA-capable device", or without a driver "CUDA driver version is insufficient ...")."""
  message = HARNESS.launch_dense(0, "float32", False, 16, 16, 16, 16, 8, (16,) * 2 + (False,) +
                                 (16,) * 4)
  assert "device" in message.lower() or "driver" in message.lower(), message


@needs_harness
def test_the_harness_reports_its_cuda_version():
  major = int(HARNESS.cuda_version().split(".")[0])
  assert major >= 12
  assert HARNESS.MAX_TENSORS_PER_LAUNCH == 48
  assert os.path.basename(HARNESS.__file__).startswith("adam_gpu_harness")
