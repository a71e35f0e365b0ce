"""The 8-bit-state CUDA kernels against the NumPy reference of the 8-bit rule
(tests/state_8bit_reference.py), with no TensorFlow: codes, scales and float32/float64 variables bit
for bit (the kernels are built with --fmad=false and run the CPU's encoder)."""

import os
import sys

import numpy as np
import pytest

from gpu_support import Scalars, needs_gpu, stream, to_device, to_host, torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import state_8bit_reference as ref  # noqa: E402  (tests/, beside this folder)

HYPER = (0.01, 0.9, 0.999, 1e-8)
POWERS = (0.9**3, 0.999**3)


def _harness():
  from gpu_support import HARNESS
  return HARNESS


def _device_states(states):
  arrays = [states.m[0], states.m[1], states.v[0], states.v[1]]
  if states.vhat is not None:
    arrays += [states.vhat[0], states.vhat[1]]
  return [to_device(a.copy()) for a in arrays]


def _assert_states(device, states):
  expected = [states.m[0], states.m[1], states.v[0], states.v[1]]
  if states.vhat is not None:
    expected += [states.vhat[0], states.vhat[1]]
  for tensor, want in zip(device, expected):
    got = tensor.cpu().numpy()
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def _start(rng, size, amsgrad):
  """Reference states after one step from zero, so the step under test decodes real codes."""
  states = ref.States(size, amsgrad)
  ref.step(np.zeros(size, np.float32), states, rng.standard_normal(size).astype(np.float32),
           0.9, 0.999, *HYPER)
  return states


@needs_gpu
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("size", [1, 256, 1000, 1 << 20])
def test_dense_8bit_kernel_equals_reference(dtype_name, size, amsgrad):
  rng = np.random.default_rng(size)
  dtype = np.dtype(dtype_name)
  var = rng.standard_normal(size).astype(dtype)
  grad = rng.standard_normal(size).astype(dtype)
  states = _start(rng, size, amsgrad)
  device_var, device_grad = to_device(var), to_device(grad)
  device_states = _device_states(states)
  compute = "float64" if dtype_name == "float64" else "float32"
  scalars = Scalars(*POWERS, *HYPER, compute=compute)
  error = _harness().launch_dense_8bit(stream(), dtype_name, False, device_var.data_ptr(),
                                       device_grad.data_ptr(), size,
                                       [t.data_ptr() for t in device_states], scalars.pointers())
  assert error == ""
  torch.cuda.synchronize()
  powers = tuple(np.float32(p) for p in POWERS)
  expected_var = ref.step(var, states, grad, *powers, *HYPER)
  np.testing.assert_array_equal(to_host(device_var, dtype).view(np.uint8),
                                expected_var.view(np.uint8))
  _assert_states(device_states, states)


@needs_gpu
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("width", [3, 300])
def test_sparse_8bit_kernel_equals_reference(lazy, width):
  rng = np.random.default_rng(width)
  rows = 50
  var = rng.standard_normal((rows, width)).astype(np.float32)
  indices = np.array([4, 17, 4, 49], np.int64)
  grad = rng.standard_normal((4, width)).astype(np.float32)
  states = _start(rng, var.size, False)
  order = np.argsort(indices, kind="stable")
  unique_rows, starts = np.unique(indices[order], return_index=True)
  starts = np.append(starts, len(indices)).astype(np.int64)
  if lazy:
    blocks = sorted({e // 256 for r in unique_rows for e in range(r * width, (r + 1) * width)})
  else:
    blocks = list(range(-(-var.size // 256)))
  device = {name: to_device(np.asarray(a)) for name, a in dict(
      var=var, grad=grad, order=order.astype(np.int64), starts=starts,
      unique=unique_rows.astype(np.int64), blocks=np.array(blocks, np.int64),
      summed=np.zeros(len(unique_rows) * width, np.float32)).items()}
  device_states = _device_states(states)
  scalars = Scalars(*POWERS, *HYPER)
  error = _harness().launch_sparse_8bit(
      stream(), "float32", lazy, device["var"].data_ptr(), [t.data_ptr() for t in device_states],
      rows, width, device["grad"].data_ptr(), device["order"].data_ptr(),
      device["starts"].data_ptr(), device["unique"].data_ptr(), len(unique_rows),
      device["blocks"].data_ptr(), len(blocks), device["summed"].data_ptr(), scalars.pointers())
  assert error == ""
  torch.cuda.synchronize()
  powers = tuple(np.float32(p) for p in POWERS)
  expected = ref.sparse_step(var, states, grad, indices, *powers, *HYPER, lazy=lazy)
  np.testing.assert_array_equal(device["var"].cpu().numpy(), expected)
  _assert_states(device_states, states)
