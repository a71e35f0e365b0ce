"""The CUDA kernels' AMSGrad and weight decay variants against the NumPy rule (tests/
numpy_reference.py's variant_step and sparse_variant_step, from the published formulas), with no
TensorFlow: dense, multi-tensor (two launches) and sparse (all rows and lazy), every dtype, bit for
bit in float32/float64, within one rounding of the storage type in float16/bfloat16."""

import numpy as np
import pytest

import reference
from gpu_support import needs_gpu, numpy_dtype, stream, to_device, to_host, torch, HARNESS
from test_kernels import HYPER, _compute, _reference_powers, _scalars, _state, assert_matches

WEIGHT_DECAY = 0.04
VARIANTS = {"amsgrad": (True, None), "decay": (False, "var"), "decay_lr": (False, "var_lr"),
            "amsgrad_decay": (True, "var"), "amsgrad_decay_lr": (True, "var_lr")}
DTYPES = ["float16", "bfloat16", "float32", "float64"]
NAMES = ("var", "m", "v", "vhat")


def _options(variant, dtype_name):
  """(amsgrad, weight decay for the reference, decay device pointer holder, times_lr)."""
  amsgrad, decay = VARIANTS[variant]
  if decay is None:
    return amsgrad, None, None, False
  torch_dtype = torch.float64 if _compute(dtype_name) == "float64" else torch.float32
  on_device = torch.tensor(WEIGHT_DECAY, dtype=torch_dtype, device="cuda")
  return amsgrad, on_device.item(), on_device, decay == "var_lr"


def _vhat(rng, v):
  return (v.astype(np.float64) * rng.uniform(0.5, 1.5, v.shape)).astype(v.dtype)


def _expected(state, vhat, amsgrad, decay, times_lr):
  var, m, v, grad = state
  out = reference.variant_step(var, m, v, vhat if amsgrad else None, grad, *_reference_powers(),
                               *HYPER.values(), weight_decay=decay, times_lr=times_lr)
  return [x for x in out if x is not None]


@needs_gpu
@pytest.mark.parametrize("size", [1, 1023, 2**20 + 3])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_dense_variants_match_the_rule(rng, dtype_name, variant, size):
  dtype = numpy_dtype(dtype_name)
  amsgrad, decay, d_decay, times_lr = _options(variant, dtype_name)
  state = _state(rng, (size,), dtype)
  vhat = _vhat(rng, state[2])
  d = [to_device(x) for x in (*state, vhat)]
  error = HARNESS.launch_dense(
      stream(), dtype_name, False, *(x.data_ptr() for x in d[:4]), size,
      _scalars(dtype_name).pointers(), vhat=d[4].data_ptr() if amsgrad else 0,
      weight_decay=d_decay.data_ptr() if d_decay is not None else 0, weight_decay_times_lr=times_lr)
  assert error == ""
  torch.cuda.synchronize()
  actual = [to_host(x, dtype) for x in (d[0], d[1], d[2], d[4])]
  for name, a, e in zip(NAMES, actual, _expected(state, vhat, amsgrad, decay, times_lr)):
    assert_matches(a, e, dtype, name)


@needs_gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_multi_tensor_variants_match_the_rule(rng, dtype_name, variant):
  dtype = numpy_dtype(dtype_name)
  amsgrad, decay, d_decay, times_lr = _options(variant, dtype_name)
  sizes = [0, 5, 3000, 1] * 15  # 60 tensors: two launches
  states = [_state(rng, (s,), dtype) for s in sizes]
  vhats = [_vhat(rng, s[2]) for s in states]
  device = [[to_device(x) for x in (*s, h)] for s, h in zip(states, vhats)]
  error = HARNESS.launch_multi(
      stream(), dtype_name, False, [tuple(x.data_ptr() for x in d[:4]) + (d[0].numel(),)
                                    for d in device],
      _scalars(dtype_name).pointers(), vhats=[d[4].data_ptr() for d in device] if amsgrad else [],
      weight_decay=d_decay.data_ptr() if d_decay is not None else 0, weight_decay_times_lr=times_lr)
  assert error == ""
  torch.cuda.synchronize()
  for k, (state, vhat, d) in enumerate(zip(states, vhats, device)):
    actual = [to_host(x, dtype) for x in (d[0], d[1], d[2], d[4])]
    for name, a, e in zip(NAMES, actual, _expected(state, vhat, amsgrad, decay, times_lr)):
      assert_matches(a, e, dtype, f"tensor {k} {name}")


@needs_gpu
@pytest.mark.parametrize("lazy", [False, True], ids=["all rows", "lazy"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_sparse_variants_match_the_rule(rng, dtype_name, variant, lazy):
  dtype = numpy_dtype(dtype_name)
  amsgrad, decay, d_decay, times_lr = _options(variant, dtype_name)
  rows, width, batch = 300, 33, 200
  var, m, v, _ = _state(rng, (rows, width), dtype)
  vhat = _vhat(rng, v)
  indices = rng.integers(0, rows, batch)
  indices[batch // 3:2 * (batch // 3)] = indices[:batch // 3]  # duplicates: summed, decayed once
  grad = rng.standard_normal((batch, width)).astype(dtype)
  order, starts, unique = (to_device(x) for x in reference.segments(indices))
  d = [to_device(x) for x in (var, m, v, vhat, grad)]
  summed = torch.empty(unique.numel() * width, device="cuda",
                       dtype=torch.float64 if _compute(dtype_name) == "float64" else torch.float32)
  error = HARNESS.launch_sparse(
      stream(), dtype_name, lazy, False, *(x.data_ptr() for x in d[:3]), rows, width,
      d[4].data_ptr(), 0, order.data_ptr(), starts.data_ptr(), unique.data_ptr(), unique.numel(),
      summed.data_ptr(), _scalars(dtype_name).pointers(), vhat=d[3].data_ptr() if amsgrad else 0,
      weight_decay=d_decay.data_ptr() if d_decay is not None else 0, weight_decay_times_lr=times_lr)
  assert error == ""
  torch.cuda.synchronize()
  expected = reference.sparse_variant_step(
      var, m, v, vhat if amsgrad else None, grad, indices, *_reference_powers(), *HYPER.values(),
      lazy=lazy, weight_decay=decay, times_lr=times_lr)
  actual = [to_host(x, dtype) for x in d[:4]]
  for name, a, e in zip(NAMES, actual, [x for x in expected if x is not None]):
    assert_matches(a, e, dtype, name)
