"""Child process for test_simd.py: with TF_ADAM_OP_CPU_SIMD set by the parent, runs the dense and
the multi-tensor op on awkward sizes and values, and the float32 8-bit-state op (whose codec
follows the instruction set), and checks them against the NumPy reference, bit for bit. Prints the
instruction set and the 8-bit codec the op library reports, then OK."""

import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, sys.argv[1])  # the tests directory, for the reference
from numpy_reference import adam_step, variant_step
import state_8bit_reference
import tf_adam_op  # noqa: F401  (registers the ops)
from tf_adam_op import ops

SCALARS = (np.float32(0.9)**3, np.float32(0.999)**3, 0.01, 0.9, 0.999, 1e-8)
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-45, 3.4e38, 1e-300]


def state(rng, size, dtype):
  var = rng.standard_normal(size).astype(dtype)
  grad = rng.standard_normal(size).astype(dtype)
  with np.errstate(over="ignore"):
    grad[:min(size, len(SPECIAL))] = np.array(SPECIAL[:size]).astype(dtype)
  m = (0.1 * rng.standard_normal(size)).astype(dtype)
  v = np.abs(0.01 * rng.standard_normal(size)).astype(dtype)
  return var, m, v, grad


def same_bits(a, b):
  return np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def main():
  print(ops._op_library.tf_adam_op_cpu_simd().numpy().decode())
  print(ops._op_library.tf_adam_op_cpu8bit_codec().numpy().decode())
  rng = np.random.default_rng(5)
  for dtype in (np.float32, np.float64):
    compute = ops.compute_dtype(dtype)
    for nesterov in (False, True):
      states = [state(rng, size, dtype) for size in (1, 7, 1023, 4099, 40000)]
      dense = [[tf.Variable(x) for x in s[:3]] for s in states]
      multi = [[tf.Variable(x) for x in s[:3]] for s in states]
      scalars = [tf.constant(x, compute) for x in SCALARS]
      for (var, m, v), s in zip(dense, states):
        ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *scalars, tf.constant(s[3]),
                                   use_nesterov=nesterov)
      ops.resource_apply_adam_v1_multi_no_advance(
          *[[t[k].handle for t in multi] for k in range(3)], *scalars,
          [tf.constant(s[3]) for s in states], use_nesterov=nesterov)
      for s, d, mu in zip(states, dense, multi):
        expected = adam_step(*s, *SCALARS, use_nesterov=nesterov)
        for e, a, b in zip(expected, d, mu):
          assert same_bits(a.numpy(), e) and same_bits(b.numpy(), e), (dtype, nesterov, len(s[0]))
    check_variants(rng, dtype)
  check_8bit_states(rng)
  print("OK")


def check_variants(rng, dtype):
  """AMSGrad and the two weight decay conventions, dense and multi-tensor."""
  compute = ops.compute_dtype(dtype)
  scalars = [tf.constant(x, compute) for x in SCALARS]
  for amsgrad, decay, times_lr in ((True, None, False), (False, 0.01, False), (True, 0.01, True)):
    states = [state(rng, size, dtype) for size in (1, 7, 1023, 4099, 40000)]
    vhats = [np.abs(s[2] * 1.1 - 1e-3).astype(dtype) for s in states]
    dense = [[tf.Variable(x) for x in (*s[:3], h)] for s, h in zip(states, vhats)]
    multi = [[tf.Variable(x) for x in (*s[:3], h)] for s, h in zip(states, vhats)]
    extra = dict(weight_decay=decay, weight_decay_times_lr=times_lr)
    for (var, m, v, vhat), s in zip(dense, states):
      ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *scalars, tf.constant(s[3]),
                                 vhat=vhat.handle if amsgrad else None, **extra)
    ops.resource_apply_adam_v1_multi_no_advance(
        *[[t[k].handle for t in multi] for k in range(3)], *scalars,
        [tf.constant(s[3]) for s in states],
        vhats=[t[3].handle for t in multi] if amsgrad else None, **extra)
    for s, h, d, mu in zip(states, vhats, dense, multi):
      expected = variant_step(*s[:3], h if amsgrad else None, s[3], *SCALARS,
                              weight_decay=decay, times_lr=times_lr)
      for e, a, b in zip(expected, d, mu):
        if e is not None:
          assert same_bits(a.numpy(), e) and same_bits(b.numpy(), e), (
              dtype, amsgrad, decay, len(s[0]))


def check_8bit_states(rng):
  """Float32 8-bit-state steps (full blocks and a short one, values over many magnitudes, a zero
  block and a tiny one) against the 8-bit reference: var, codes and scales."""
  size = 256 * 40 + 77
  var = rng.standard_normal(size).astype(np.float32)
  states = state_8bit_reference.States(size)
  variables = [tf.Variable(var)] + [
      tf.Variable(np.zeros(n, dtype)) for _ in range(2)
      for n, dtype in ((size, np.uint8), (-(-size // 256), np.float32))]
  for step in range(3):
    grad = (rng.standard_normal(size) * 10.0**rng.uniform(-8, 2, size)).astype(np.float32)
    grad[:256] = 0.0
    grad[256:512] = rng.standard_normal(256) * 1e-30  # a block of tiny (still normal) m
    powers = (0.9**(step + 1), 0.999**(step + 1))
    ops.resource_apply_adam_8bit(
        variables[0].handle, (variables[1].handle, variables[2].handle),
        (variables[3].handle, variables[4].handle), *powers, 0.01, 0.9, 0.999, 1e-8, grad)
    var = state_8bit_reference.step(var, states, grad, *powers, 0.01, 0.9, 0.999, 1e-8)
    expected = [var, *states.m, *states.v]
    for e, a in zip(expected, variables):
      assert same_bits(a.numpy(), e), ("8-bit", step)


if __name__ == "__main__":
  main()
