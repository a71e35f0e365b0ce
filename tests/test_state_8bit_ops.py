"""The 8-bit-state ops and codec against the NumPy reference (state_8bit_reference.py): the maps,
exact nearest codes, dense and sparse steps for every dtype and variant, and bad inputs refused
before anything is written (docs/errors.md, "8-bit states")."""

import numpy as np
import pytest
import tensorflow as tf

import numpy_reference
import state_8bit_reference as ref
import tf_adam_op  # noqa: F401  (registers the ops)
from tf_adam_op import _core
from tf_adam_op import ops
from tf_adam_op import state_8bit

DTYPES = [np.float16, numpy_reference.BFLOAT16, np.float32, np.float64]
HYPER = (0.01, 0.9, 0.999, 1e-8)


def test_maps_are_bitsandbytes_definition():
  np.testing.assert_array_equal(_core.dynamic_map(True), ref.SIGNED)
  np.testing.assert_array_equal(_core.dynamic_map(False), ref.UNSIGNED)


def _values_near_every_midpoint(book):
  """Every midpoint of `book` and its float neighbours (ties and the values either side), and
  random values over every magnitude the codes span, in [-1, 1]."""
  mids = ref.midpoints(book)
  near = np.concatenate([np.nextafter(mids, -np.inf), mids, np.nextafter(mids, np.inf)])
  rng = np.random.default_rng(0)
  spread = (rng.choice([-1, 1], 200_000) * 10.0 ** rng.uniform(-9, 0, 200_000)).astype(np.float32)
  return np.clip(np.concatenate([near, spread, [0.0, -0.0, 1.0, -1.0]]), -1, 1).astype(np.float32)


@pytest.mark.parametrize("signed", [True, False])
def test_encoder_tables_are_exact(signed):
  assert _core.codebook_is_exact(signed)
  book = ref.SIGNED if signed else ref.UNSIGNED
  mids = ref.midpoints(book)
  x = _values_near_every_midpoint(book)
  # One value per block of 256 with absmax 1: the encoder sees x itself.
  blocks = np.zeros((x.size, 256), np.float32)
  blocks[:, 0], blocks[:, 1] = x, 1.0
  codes, absmax = _core.quantize_blockwise(blocks.reshape(-1), signed)
  assert np.all(absmax == 1.0)
  np.testing.assert_array_equal(codes.reshape(-1, 256)[:, 0],
                                np.searchsorted(mids, np.clip(x, -1, 1), side="left"))


def _assert_kernel_codes_count_the_midpoints(x):
  """Runs the CPU kernel's encoder (AVX-512 where the CPU has it, else the portable one) on x as m
  and x * x as v, and checks that it gives the codes the float32 midpoints below them count (the
  nearest, but for values on a rounded midpoint: ROUNDED_MIDPOINT_CASES): a step with beta1 =
  beta2 = 0 from zero states stores m = g and v = g * g exactly, and a 1 in each block's first
  element makes its absmax 1."""
  x = np.concatenate([x, np.zeros(-x.size % 255, np.float32)])
  grad = np.ones((x.size // 255, 256), np.float32)
  grad[:, 1:] = x.reshape(-1, 255)
  s = States(np.zeros_like(grad))
  m, v, _ = s.handles()
  ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.5, 0.5, 0.01, 0.0, 0.0, 1e-8, grad)
  assert np.all(s.m[1].numpy() == 1.0) and np.all(s.v[1].numpy() == 1.0)
  np.testing.assert_array_equal(
      s.m[0].numpy(), np.searchsorted(ref.midpoints(ref.SIGNED), grad, side="left"))
  np.testing.assert_array_equal(
      s.v[0].numpy(), np.searchsorted(ref.midpoints(ref.UNSIGNED), grad * grad, side="left"))


def test_kernel_encoder_codes_are_exact():
  # Square roots of the values near v's midpoints, and their neighbours: their squares straddle them.
  roots = np.sqrt(_values_near_every_midpoint(ref.UNSIGNED)[:3 * 255])
  roots = np.concatenate([np.nextafter(roots, 0), roots, np.nextafter(roots, 2)])
  _assert_kernel_codes_count_the_midpoints(
      np.concatenate([_values_near_every_midpoint(ref.SIGNED), roots]).astype(np.float32))


# (x, its code, the code of the map value nearest to x by exact distance): docs/state_8bit.md,
# "The encoder, exactly" (found by an outside check, with bfloat16 states).
ROUNDED_MIDPOINT_CASES = [(-0.015625, 93, 94), (0.015625, 160, 160), (-0.578125, 29, 30),
                          (0.578125, 224, 224)]


@pytest.mark.parametrize("x, code, nearest", ROUNDED_MIDPOINT_CASES)
def test_a_value_on_a_rounded_midpoint_takes_the_lower_code(x, code, nearest):
  """The code counts the float32 midpoints strictly below x: where rounding a midpoint put it on
  x, x takes the lower code, for a negative x the farther map value (by less than an ulp), and x
  and -x are not mirror images. The kernel and `quantize` (the conversions) agree."""
  values = ref.SIGNED.astype(np.float64)
  assert int(np.argmin(np.abs(values - x))) == nearest
  assert np.float32(0.5) * (ref.SIGNED[code] + ref.SIGNED[code + 1]) == np.float32(x) or (
      code == nearest)
  block = np.zeros(256, np.float32)
  block[0], block[1] = x, 1.0
  codes, absmax = state_8bit.quantize(block, signed=True)
  assert absmax[0] == 1.0 and codes[0] == code
  _assert_kernel_codes_count_the_midpoints(np.array([x], np.float32))


def test_the_encoder_scales_by_the_reciprocal_not_by_a_division():
  """docs/state_8bit.md, "The encoder, exactly": x * (1 / absmax) in float32 (an outside check
  found the docs saying x / absmax, which here lands on midpoint 206 itself and gives 206)."""
  x, absmax = np.float32(0.86328125), np.float32(2.65625)
  mids = ref.midpoints(ref.SIGNED)
  assert x / absmax == mids[206] and x * (np.float32(1) / absmax) > mids[206]
  block = np.zeros(256, np.float32)
  block[0], block[1] = x, absmax
  codes, scales = state_8bit.quantize(block, signed=True)
  assert scales[0] == absmax and codes[0] == 207
  grad = np.zeros((1, 256), np.float32)
  grad[0, :2] = block[:2]
  s = States(np.zeros_like(grad))
  m, v, _ = s.handles()
  ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.5, 0.5, 0.01, 0.0, 0.0, 1e-8, grad)
  assert s.m[0].numpy()[0, 0] == 207  # the kernel's code for m = grad


@pytest.mark.parametrize("signed", [True, False])
def test_both_maps_fit_the_vectorised_encoders_pieces(signed):
  """The AVX-512 encoder computes codes from affine pieces of the map (core/codebook_pieces.h); if
  the map did not fit them it would read the tables for every element: no silent slow path."""
  assert _core.codebook_pieces_fit(signed)


def test_kernel_encoder_on_a_sweep_of_every_magnitude():
  """Every 997th float32 in [-1, 1] (about 2.2 million, every binade and piece of the maps) as m,
  and their squares as v."""
  x = np.arange(0, 0x3F800001, 997, dtype=np.uint32).view(np.float32)
  _assert_kernel_codes_count_the_midpoints(np.concatenate([x, -x]))


@pytest.mark.parametrize("signed", [True, False])
def test_tiny_blocks_are_scaled_before_the_reciprocal(signed):
  """A block of denormal values: 1 / absmax overflows float32, so the encoder scales the block by
  2**64 first (exactly); 0 keeps the code of 0 (it was 0 * inf = NaN, an out-of-table read)."""
  book = ref.SIGNED if signed else ref.UNSIGNED
  x = np.zeros(512, np.float32)
  x[:4] = [1e-40, 3e-41, 2e-42, -5e-41 if signed else 5e-41]
  x[256:260] = [2e-39, 1e-39, 4e-40, 1e-45]  # absmax just above 2**-128 (reciprocal finite)
  codes, absmax = _core.quantize_blockwise(x, signed)
  expected_codes, expected_absmax = ref.encode(x, book)
  np.testing.assert_array_equal(codes, expected_codes)
  np.testing.assert_array_equal(absmax, expected_absmax)
  zero_code = np.searchsorted(ref.midpoints(book), 0.0, side="left")
  assert np.all(codes[4:256] == zero_code) and np.all(codes[260:] == zero_code)
  exact = np.searchsorted(ref.midpoints(book), x[:4].astype(np.float64) / np.float64(absmax[0]))
  np.testing.assert_array_equal(codes[:4], exact)


def test_special_blocks():
  x = np.zeros(256 * 3, np.float32)
  x[256 + 5] = np.nan
  x[512:] = np.linspace(-2, 3, 256)
  codes, absmax = state_8bit.quantize(x, signed=True)
  assert absmax[0] == 0 and np.all(codes[:256] == 0)
  assert np.isnan(absmax[1]) and np.all(codes[256:512] == 0)
  assert absmax[2] == 3
  assert np.isnan(state_8bit.dequantize(codes, absmax, True)[256:512]).all()


class States:
  """A variable, its 8-bit state variables and the reference's copy of both."""

  def __init__(self, value, amsgrad=False):
    size = value.size
    blocks = -(-size // 256)
    self.var = tf.Variable(value)
    pair = lambda: (tf.Variable(np.zeros(value.shape, np.uint8)),
                    tf.Variable(np.zeros(blocks, np.float32)))
    self.m, self.v = pair(), pair()
    self.vhat = pair() if amsgrad else None
    self.ref = ref.States(size, amsgrad)
    self.ref_var = value.copy()

  def handles(self):
    h = lambda pair: None if pair is None else (pair[0].handle, pair[1].handle)
    return h(self.m), h(self.v), h(self.vhat)

  def assert_equal_to_reference(self):
    np.testing.assert_array_equal(self.var.numpy(), self.ref_var)
    for ours, theirs in [(self.m, self.ref.m), (self.v, self.ref.v), (self.vhat, self.ref.vhat)]:
      if ours is not None:
        np.testing.assert_array_equal(ours[0].numpy().reshape(-1), theirs[0])
        np.testing.assert_array_equal(ours[1].numpy(), theirs[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", ["plain", "amsgrad", "decay", "decay_lr", "nesterov"])
def test_dense_steps_equal_reference(dtype, variant):
  rng = np.random.default_rng(1)
  shape = (33, 50)  # 1650 elements: 6 full blocks and a short one
  s = States(rng.normal(size=shape).astype(dtype), amsgrad=variant == "amsgrad")
  options, reference_options = {}, {}
  if variant.startswith("decay"):
    options = dict(weight_decay=0.1, weight_decay_times_lr=variant == "decay_lr")
    reference_options = dict(weight_decay=0.1, times_lr=variant == "decay_lr")
  if variant == "nesterov":
    options = reference_options = dict(use_nesterov=True)
  powers = [0.9, 0.999]
  for _ in range(4):
    grad = (rng.normal(size=shape) * rng.choice([1e-4, 1.0, 30.0])).astype(dtype)
    m, v, vhat = s.handles()
    ops.resource_apply_adam_8bit(s.var.handle, m, v, *powers, *HYPER, grad, vhat_states=vhat,
                                 **options)
    s.ref_var = ref.step(s.ref_var, s.ref, grad, *powers, *HYPER, **reference_options)
    powers = [powers[0] * 0.9, powers[1] * 0.999]
    s.assert_equal_to_reference()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("lazy", [False, True], ids=["sparse", "lazy"])
@pytest.mark.parametrize("width", [3, 100, 256, 300])
def test_sparse_steps_equal_reference(dtype, lazy, width):
  rng = np.random.default_rng(2)
  rows = 40
  s = States(rng.normal(size=(rows, width)).astype(dtype))
  for step in range(3):
    indices = rng.integers(0, rows, size=7).astype(np.int64)
    indices[0] = indices[1]  # a duplicate
    grad = rng.normal(size=(7, width)).astype(dtype)
    m, v, _ = s.handles()
    ops.resource_sparse_apply_adam_8bit(s.var.handle, m, v, 0.9 ** (step + 1),
                                        0.999 ** (step + 1), *HYPER, grad, indices, lazy=lazy)
    s.ref_var = ref.sparse_step(s.ref_var, s.ref, grad, indices, 0.9 ** (step + 1),
                                0.999 ** (step + 1), *HYPER, lazy=lazy)
    s.assert_equal_to_reference()


def test_lazy_leaves_untouched_blocks_alone():
  rng = np.random.default_rng(3)
  s = States(rng.normal(size=(64, 64)).astype(np.float32))
  m, v, _ = s.handles()
  ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.9, 0.999, *HYPER,
                               rng.normal(size=(64, 64)).astype(np.float32))
  before = [x.numpy().copy() for x in (s.var, *s.m, *s.v)]
  ops.resource_sparse_apply_adam_8bit(s.var.handle, m, v, 0.81, 0.998, *HYPER,
                                      np.ones((1, 64), np.float32), [5], lazy=True)
  after = [x.numpy() for x in (s.var, *s.m, *s.v)]
  # Row 5 is elements 320..383: block 1 (256..511), which holds rows 4..7.
  np.testing.assert_array_equal(after[0][[r for r in range(64) if r != 5]],
                                before[0][[r for r in range(64) if r != 5]])
  for i in (1, 3):
    flat_before, flat_after = before[i].reshape(-1), after[i].reshape(-1)
    outside = np.r_[0:256, 512:4096]
    np.testing.assert_array_equal(flat_after[outside], flat_before[outside])
  for i in (2, 4):
    np.testing.assert_array_equal(np.delete(after[i], 1), np.delete(before[i], 1))


def _unchanged(s, call):
  before = [x.numpy().copy() for x in (s.var, *s.m, *s.v)]
  call()
  for b, x in zip(before, (s.var, *s.m, *s.v)):
    np.testing.assert_array_equal(x.numpy(), b)


@pytest.mark.parametrize("bad_scale", [-1.0, np.inf, -np.inf])
def test_corrupt_scale_is_refused_before_any_write(bad_scale):
  s = States(np.ones((20, 300), np.float32))
  m, v, _ = s.handles()
  ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.9, 0.999, *HYPER, np.ones((20, 300), np.float32))
  absmax = s.v[1].numpy()
  absmax[-1] = bad_scale
  s.v[1].assign(absmax)
  grad = np.ones((20, 300), np.float32)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"v_absmax: block 23's scale is .* corrupt"):
    _unchanged(s, lambda: ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.9, 0.999, *HYPER, grad))
  with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt"):
    _unchanged(s, lambda: ops.resource_sparse_apply_adam_8bit(
        s.var.handle, m, v, 0.9, 0.999, *HYPER, grad[:1], [0], lazy=True))


def test_nan_scale_is_a_poisoned_block_not_an_error():
  s = States(np.ones((2, 256), np.float32))
  m, v, _ = s.handles()
  grad = np.ones((2, 256), np.float32)
  grad[0, 3] = np.nan
  ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.9, 0.999, *HYPER, grad)
  assert np.isnan(s.m[1].numpy()[0]) and s.m[1].numpy()[1] > 0
  ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.81, 0.998, *HYPER, np.ones((2, 256), np.float32))
  assert np.isnan(s.var.numpy()[0]).all() and np.isfinite(s.var.numpy()[1]).all()


@pytest.mark.parametrize("which,shape,match", [
    ("m_codes", (20, 301), "var and m_codes do not have the same shape"),
    ("v_absmax", (23,), r"v_absmax must have one scale per block of 256 elements"),
    ("grad", (20, 301), "var and grad do not have the same shape"),
])
def test_shapes_are_checked_before_any_write(which, shape, match):
  s = States(np.ones((20, 300), np.float32))
  grad = np.ones((20, 300), np.float32)
  if which == "m_codes":
    s.m = (tf.Variable(np.zeros(shape, np.uint8)), s.m[1])
  elif which == "v_absmax":
    s.v = (s.v[0], tf.Variable(np.zeros(shape, np.float32)))
  else:
    grad = np.ones(shape, np.float32)
  m, v, _ = s.handles()
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
    _unchanged(s, lambda: ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.9, 0.999, *HYPER, grad))


def test_codes_of_another_dtype_are_refused():
  s = States(np.ones((20, 300), np.float32))
  s.m = (tf.Variable(np.zeros((20, 300), np.float32)), s.m[1])
  m, v, _ = s.handles()
  with pytest.raises(tf.errors.InvalidArgumentError, match="m_codes"):
    _unchanged(s, lambda: ops.resource_apply_adam_8bit(s.var.handle, m, v, 0.9, 0.999, *HYPER,
                                                       np.ones((20, 300), np.float32)))


def test_check_8bit_scales_says_which_scale_vectors_are_corrupt():
  values = [[0.0, 1.5], [np.nan, 2.0], [1.0, -1.0], [np.inf, 0.0], [3.0, 4.0]]
  scales = [tf.Variable(np.array(v, np.float32)) for v in values]
  valid = ops.check_8bit_scales([s.handle for s in scales]).numpy()
  np.testing.assert_array_equal(valid, [True, True, False, False, True])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"scales\[1\] must be float32"):
    ops.check_8bit_scales([scales[0].handle, tf.Variable(np.zeros(2, np.uint8)).handle])


def test_bad_index_is_refused_before_any_write():
  s = States(np.ones((20, 300), np.float32))
  m, v, _ = s.handles()
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[1\] = 20 is not in \[0, 20\)"):
    _unchanged(s, lambda: ops.resource_sparse_apply_adam_8bit(
        s.var.handle, m, v, 0.9, 0.999, *HYPER, np.ones((2, 300), np.float32), [3, 20]))


# Names with every character a name could hold that MLIR's string syntax gives a meaning to.
_AWKWARD_NAMES = ['a "quoted" name', "back\\slash }{ , = : #", "tab\tand unicode \u00e9"]


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.skipif(
    not __import__("tf_adam_op._step.xla", fromlist=["x"]).kernels_enabled(),
    reason="no XLA kernels here"))], ids=["cpu kernel", "xla custom call"])
def test_check_8bit_scale_values_names_the_first_corrupt_block(jit_compile):
  """Check8bitScaleValues: 1.0 when every scale is valid (NaN included: a poisoned block), else
  InvalidArgument naming the scales by their name and the block (docs/errors.md)."""
  check = tf.function(lambda *scales: ops.check_8bit_scale_values(scales, _AWKWARD_NAMES),
                      jit_compile=jit_compile)
  good = [tf.constant([0.0, 1.5, np.nan], tf.float32), tf.constant([2.0], tf.float32),
          tf.constant([3.0, 0.0], tf.float32)]
  assert check(*good).numpy() == np.float32(1.0)
  for k, bad_value in [(1, -1.0), (2, np.inf)]:
    scales = list(good)
    scales[k] = tf.tensor_scatter_nd_update(scales[k], [[len(good[k].numpy()) - 1]], [bad_value])
    expected = (f"{_AWKWARD_NAMES[k]}: block {len(good[k].numpy()) - 1}'s scale is "
                f"{'-1' if bad_value == -1.0 else 'inf'}, not a scale an 8-bit state can have")
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
      check(*scales)
    assert expected in str(raised.value)


_XLA_KERNELS = __import__("tf_adam_op._step.xla", fromlist=["x"]).kernels_enabled()
_MULTI_FORMS = ["packed", "unpacked", pytest.param("unpacked under xla", marks=pytest.mark.skipif(
    not _XLA_KERNELS, reason="no XLA kernels here"))]


def _multi_op(form):
  """The multi-tensor 8-bit op in `form`: its handles in vectors (ResourceApplyAdam8bitMulti), or
  as lists (ResourceApplyAdam8bitMultiUnpacked), eagerly or compiled by XLA."""
  op = (ops.resource_apply_adam_8bit_multi if form == "packed"
        else ops.resource_apply_adam_8bit_multi_unpacked)
  if form != "unpacked under xla":
    return op

  @tf.function(jit_compile=True)
  def compiled(*args, **kwargs):
    op(*args, **kwargs)  # (returns nothing: an op is not a value a function can return)
  return compiled


def _lists(states, vhat=False):
  """The op's handle arguments for several States: vars, (m codes, m scales), (v ...), vhat."""
  pairs = [s.handles() for s in states]
  lists = lambda k: ([p[k][0] for p in pairs], [p[k][1] for p in pairs])
  return [s.var.handle for s in states], lists(0), lists(1), (lists(2) if vhat else None)


@pytest.mark.parametrize("form", _MULTI_FORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", ["plain", "amsgrad", "decay_lr", "nesterov"])
def test_multi_tensor_steps_equal_reference(form, dtype, variant):
  """Both multi-tensor ops, and the unpacked one under XLA (one custom call over all the
  variables), give each variable the single-variable rule's bits (the reference's)."""
  rng = np.random.default_rng(3)
  shapes = [(33, 50), (0,), (4097,), (3,)]  # a short last block, an empty variable, one of 1 block
  amsgrad = variant == "amsgrad"
  states = [States(rng.normal(size=s).astype(dtype), amsgrad=amsgrad) for s in shapes]
  options, reference_options = {}, {}
  if variant == "decay_lr":
    options = dict(weight_decay=0.1, weight_decay_times_lr=True)
    reference_options = dict(weight_decay=0.1, times_lr=True)
  if variant == "nesterov":
    options = reference_options = dict(use_nesterov=True)
  op = _multi_op(form)
  powers = [0.9, 0.999]
  for _ in range(3):
    grads = [(rng.normal(size=s) * rng.choice([1e-4, 1.0, 30.0])).astype(dtype) for s in shapes]
    variables, m, v, vhat = _lists(states, amsgrad)
    op(variables, m, v, *powers, *HYPER, [tf.constant(g) for g in grads], vhat_states=vhat,
       **options)
    for s, grad in zip(states, grads):
      s.ref_var = ref.step(s.ref_var, s.ref, grad, *powers, *HYPER, **reference_options)
      s.assert_equal_to_reference()
    powers = [powers[0] * 0.9, powers[1] * 0.999]


@pytest.mark.parametrize("form", _MULTI_FORMS)
def test_multi_tensor_op_names_a_corrupt_state_and_writes_nothing(form):
  """A corrupt scale of any of the N variables is refused before any of them is written: by the
  input (v_absmax[1]: the list's position), and by the variable's name where names are given."""
  states = [States(np.ones((300,), np.float32)) for _ in range(2)]
  states[1].v[1].assign([1.0, -2.0])
  op = _multi_op(form)
  call = lambda names: op(*_lists(states)[:3], 0.9, 0.999, 0.01, 0.9, 0.999, 1e-8,
                          [tf.ones((300,))] * 2, variable_names=names)
  everything = lambda: [x.numpy() for s in states for x in (s.var, *s.m, *s.v)]
  before = everything()
  for names, expected in [([], r"v_absmax\[1\]: block 1's scale is -2"),
                          (["'first'", "'second'"],
                           r"the 8-bit states of 'second': v_absmax\[1\]: block 1's scale is -2")]:
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
      call(names)
    for b, a in zip(before, everything()):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="variable_names must be empty or name the 2"):
    call(["'first'"])


@pytest.mark.parametrize("form", _MULTI_FORMS)
def test_multi_tensor_op_refuses_one_variable_given_twice(form):
  """Two updates of one variable in one op would keep only one: refused, by the op, or under XLA
  by TensorFlow itself before anything runs ("Duplicate variable passed to XLA cluster")."""
  states = [States(np.ones((300,), np.float32)) for _ in range(2)]
  variables, m, v, _ = _lists(states)
  variables[1] = variables[0]
  error, message = ((tf.errors.UnimplementedError, "Duplicate variable") if "xla" in form
                    else (tf.errors.InvalidArgumentError, "same variable"))
  before = states[0].var.numpy()
  with pytest.raises(error, match=message):
    _multi_op(form)(variables, m, v, 0.9, 0.999, 0.01, 0.9, 0.999, 1e-8, [tf.ones((300,))] * 2)
  np.testing.assert_array_equal(states[0].var.numpy(), before)
