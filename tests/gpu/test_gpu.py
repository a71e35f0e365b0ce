"""The CUDA kernels. What needs no GPU runs everywhere (the build facts, the kernel registrations);
the rest runs on a machine with an NVIDIA GPU and skips itself, with its reason, elsewhere."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels

import fatbin
from numpy_reference import BFLOAT16
import tf_adam_op
from tf_adam_op import _build_info, _loader, ops
from tf_adam_op._step import xla

GPUS = tf.config.list_physical_devices("GPU")
needs_gpu = pytest.mark.skipif(not GPUS, reason="no GPU visible (these run where one is)")
needs_cuda_build = pytest.mark.skipif(not _build_info.CUDA_KERNELS_BUILT,
                                      reason="built without CUDA kernels (no nvcc at build time)")
OPS = ("ApplyAdamV1", "ResourceApplyAdamV1", "ResourceApplyAdamV1Multi",
       "ResourceApplyAdamV1MultiNoAdvance", "ResourceApplyAdamV1MultiUnpacked",
       "SparseApplyAdamV1", "ResourceSparseApplyAdamV1", "ResourceApplyAdam8bit",
       "ResourceSparseApplyAdam8bit", "ResourceApplyAdam8bitMulti",
       "ResourceApplyAdam8bitMultiUnpacked")
DTYPES = {"float16": np.float16, "bfloat16": BFLOAT16, "float32": np.float32, "float64": np.float64}
TF_DTYPES = {"float16": tf.float16, "bfloat16": tf.bfloat16, "float32": tf.float32,
             "float64": tf.float64}


def test_info_prints_the_build_facts(tmp_path):
  result = subprocess.run([sys.executable, "-m", "tf_adam_op", "info"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"running {tf.__version__}" in result.stdout
  if _build_info.CUDA_KERNELS_BUILT:
    # machine code (sm_N) and PTX as the build facts name them (CI's TF 2.15 build: PTX only)
    archs = [a.partition("-") for a in _build_info.CUDA_ARCHITECTURES.split(",")]
    names = ", ".join(f"PTX {n}" if kind == "virtual" else f"sm_{n}" for n, _, kind in archs)
    assert f"GPU kernels: built with CUDA {_build_info.CUDA_VERSION} for {names}" in result.stdout
    # what a CUDA 13 build means is said where it is seen (pip hides CMake's warning)
    cuda13 = _build_info.CUDA_VERSION.startswith("13.")
    assert ("580 series or newer" in result.stdout) == cuda13
  else:
    assert "GPU kernels: not built" in result.stdout
  assert f"GPUs visible: {len(GPUS)}" in result.stdout


def test_build_facts_agree_with_the_registered_kernels():
  """_build_info says CUDA kernels were built exactly when GPU kernels are registered; in CI, whose
  machine has nvcc, they must have been (a build without them there means they were skipped)."""
  gpu_registered = any(kernel.device_type == "GPU"
                       for kernel in kernels.get_registered_kernels_for_op("ApplyAdamV1").kernel)
  assert _build_info.CUDA_KERNELS_BUILT == gpu_registered
  assert bool(_build_info.CUDA_VERSION) == _build_info.CUDA_KERNELS_BUILT
  if os.environ.get("CI") == "true":
    assert _build_info.CUDA_KERNELS_BUILT
    # CI builds with a CUDA 12 nvcc, as TF 2.21 is built with CUDA 12.5 (.ci/run).
    assert _build_info.CUDA_VERSION.startswith("12."), _build_info.CUDA_VERSION


@needs_cuda_build
def test_library_holds_code_for_the_recorded_architectures():
  """The op library carries machine code for each `-real` architecture and PTX for each
  `-virtual` one that the build facts name; a CUDA 12 build names sm_70, sm_80, sm_90 and PTX
  unless TF_ADAM_OP_CUDA_ARCHITECTURES chose others (CI's TF 2.15 build: PTX only)."""
  library = os.path.join(_loader.built_files_dir(_build_info), _build_info.OP_LIBRARY)
  cubins, ptx = fatbin.gpu_code(library)
  archs = _build_info.CUDA_ARCHITECTURES.split(",")
  assert cubins == {a.split("-")[0] for a in archs if a.endswith("-real")}
  assert ptx == {a.split("-")[0] for a in archs if a.endswith("-virtual")}
  if _build_info.CUDA_VERSION.startswith("12.") and _build_info.CUDA_ARCHITECTURES_DEFAULT:
    assert cubins == {"70", "80", "90"} and ptx == {"90"}


@needs_cuda_build
@pytest.mark.parametrize("op", OPS)
def test_gpu_kernels_are_registered_for_every_dtype(op):
  registered = set()
  for kernel in kernels.get_registered_kernels_for_op(op).kernel:
    if kernel.device_type == "GPU":
      for constraint in kernel.constraint:
        if constraint.name == "T":
          registered.update(constraint.allowed_values.list.type)
  assert registered == {d.as_datatype_enum for d in TF_DTYPES.values()}


@needs_cuda_build
def test_the_8bit_scale_check_has_a_gpu_kernel():
  """The optimizers check every 8-bit scale of a step with Check8bitScales before any write: on a
  GPU variable it must run there too (its handles in host memory, the scales copied to the host)."""
  devices = {kernel.device_type
             for kernel in kernels.get_registered_kernels_for_op("Check8bitScales").kernel}
  assert devices == {"CPU", "GPU"}


XLA_OPS = ("ResourceApplyAdamV1", "ResourceApplyAdamV1MultiUnpacked", "ResourceSparseApplyAdamV1",
           "CheckIndicesInRange", "ResourceApplyAdam8bit", "ResourceApplyAdam8bitMultiUnpacked",
           "ResourceSparseApplyAdam8bit", "Check8bitScaleValues")
needs_xla_kernels = pytest.mark.skipif(not _loader.xla_kernels()[0],
                                       reason="built without the XLA kernels (TensorFlow < 2.21)")


@needs_xla_kernels
@pytest.mark.parametrize("op", XLA_OPS)
def test_xla_kernels_are_registered_for_the_gpu_exactly_with_their_handlers(op):
  """Each XLA kernel of the ops is registered for XLA's GPU device exactly when the GPU handlers of
  its custom calls are built (with the CUDA kernels): an op XLA can place on a GPU has a handler
  there, and the optimizers' choice of path (_step/xla.py) relies on it."""
  tf.function(lambda x: x * 2, jit_compile=True)(tf.constant(1.0))  # XLA registers on first use
  devices = {kernel.device_type for kernel in kernels.get_registered_kernels_for_op(op).kernel}
  assert "XLA_CPU_JIT" in devices
  assert ("XLA_GPU_JIT" in devices) == _build_info.CUDA_KERNELS_BUILT, devices


@needs_xla_kernels
@pytest.mark.parametrize("gpu_handlers_built", [True, False])
def test_an_8bit_xla_step_of_a_gpu_variable_is_refused_exactly_without_gpu_handlers(
    gpu_handlers_built, monkeypatch):
  """Under XLA, a GPU variable's 8-bit step takes the ops' XLA kernels where their GPU handlers
  are built (with the CUDA kernels), and is refused (NotImplementedError naming the variable and
  its device) where they are not: there is no composite of the 8-bit rule (docs/errors.md)."""
  monkeypatch.setattr(_build_info, "CUDA_KERNELS_BUILT", gpu_handlers_built)

  class GpuVariable:  # what the check reads of a variable placed on a GPU
    name = "w:0"
    device = "/job:localhost/replica:0/task:0/device:GPU:0"

  @tf.function(jit_compile=True)
  def trace_the_check():
    xla.check_8bit_usable(GpuVariable(), "who")
    return tf.constant(0)

  if gpu_handlers_built:
    assert trace_the_check().numpy() == 0
  else:
    with pytest.raises(NotImplementedError, match="who: .*'w:0' on .*GPU:0"):
      trace_the_check()


# --- On a GPU -------------------------------------------------------------------------------------

def _tolerance(dtype):
  """CPU and GPU round each operation alike (no FMA on either side); allow a last-bit difference."""
  return {"float16": 2e-3, "bfloat16": 2e-2, "float32": 1e-6, "float64": 1e-14}[dtype]


def _run_steps(device, dtype_name, kind, steps=20, seed=0):
  """20 steps of one op kind on `device`; returns var, m, v as float64 arrays."""
  rng = np.random.default_rng(seed)
  dtype = DTYPES[dtype_name]
  shape = (37, 5)
  init = rng.standard_normal(shape).astype(dtype)
  grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
  index_batches = [rng.integers(0, shape[0], size=11) for _ in range(steps)]
  compute = ops.compute_dtype(TF_DTYPES[dtype_name])
  with tf.device(device):
    var, m, v = tf.Variable(init), tf.Variable(np.zeros_like(init)), tf.Variable(np.zeros_like(init))
    powers = tf.Variable(0.9, dtype=compute), tf.Variable(0.999, dtype=compute)
    for step in range(steps):
      hyper = [tf.constant(x, compute) for x in (0.01, 0.9, 0.999, 1e-7)]
      grad = tf.constant(grads[step])
      if kind == "dense":
        ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, *powers, *hyper, grad)
      elif kind == "multi_advance":  # the op reads the powers from the variables and advances them
        float_powers = [tf.Variable(float(p.numpy()), dtype=tf.float32) for p in powers]
        ops.resource_apply_adam_v1_multi([var.handle], [m.handle], [v.handle],
                                         *(p.handle for p in float_powers), *hyper, [grad])
        assert np.isclose(float_powers[0].numpy(), float(powers[0].numpy()) * 0.9)
      elif kind == "multi":
        ops.resource_apply_adam_v1_multi_no_advance(
            [var.handle], [m.handle], [v.handle], *powers, *hyper, [grad])
      elif kind in ("sparse", "lazy"):
        indices = tf.constant(index_batches[step])
        ops.resource_sparse_apply_adam_v1(var.handle, m.handle, v.handle, *powers, *hyper,
                                          tf.gather(grad, tf.range(11)), indices,
                                          lazy=kind == "lazy")
      powers[0].assign(powers[0] * 0.9)
      powers[1].assign(powers[1] * 0.999)
    return [x.numpy().astype(np.float64) for x in (var, m, v)]


@needs_gpu
@needs_cuda_build
@pytest.mark.parametrize("kind", ["dense", "multi", "multi_advance", "sparse", "lazy"])
@pytest.mark.parametrize("dtype_name", DTYPES.keys())
def test_gpu_matches_cpu_over_20_steps(dtype_name, kind):
  _assert_close(_run_steps("/GPU:0", dtype_name, kind), _run_steps("/CPU:0", dtype_name, kind),
                dtype_name, kind)


def _assert_close(gpu, cpu, dtype_name, what):
  for name, a, b in zip(("var", "m", "v"), gpu, cpu):
    np.testing.assert_allclose(a, b, rtol=_tolerance(dtype_name), atol=_tolerance(dtype_name),
                               err_msg=f"{name} ({what}, {dtype_name})")


def _ref_variable_steps(device, dtype_name, sparse, steps=20):
  """20 steps of ApplyAdamV1 / SparseApplyAdamV1 on ref variables in a TF1 graph on `device`."""
  rng = np.random.default_rng(1)
  dtype = DTYPES[dtype_name]
  init = rng.standard_normal((37, 5)).astype(dtype)
  grads = [rng.standard_normal((11, 5) if sparse else (37, 5)).astype(dtype) for _ in range(steps)]
  indices = [rng.integers(0, 37, size=11) for _ in range(steps)]
  compute = ops.compute_dtype(TF_DTYPES[dtype_name])
  with tf.Graph().as_default(), tf.device(device):
    var, m, v = (tf.compat.v1.Variable(x, use_resource=False)
                 for x in (init, np.zeros_like(init), np.zeros_like(init)))
    grad_in = tf.compat.v1.placeholder(TF_DTYPES[dtype_name], grads[0].shape)
    index_in = tf.compat.v1.placeholder(tf.int64, [11])
    step_in = tf.compat.v1.placeholder(compute, [2])
    hyper = [step_in[0], step_in[1]] + [tf.constant(x, compute) for x in (0.01, 0.9, 0.999, 1e-7)]
    if sparse:
      update = ops.sparse_apply_adam_v1(var, m, v, *hyper, grad_in, index_in)
    else:
      update = ops.apply_adam_v1(var, m, v, *hyper, grad_in)
    with tf.compat.v1.Session(config=tf.compat.v1.ConfigProto(allow_soft_placement=False)) as s:
      s.run(tf.compat.v1.global_variables_initializer())
      for k in range(steps):
        s.run(update, {grad_in: grads[k], index_in: indices[k],
                       step_in: [0.9 ** (k + 1), 0.999 ** (k + 1)]})
      return [x.astype(np.float64) for x in s.run([var, m, v])]


@needs_gpu
@needs_cuda_build
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype_name", DTYPES.keys())
def test_gpu_matches_cpu_for_ref_variables(dtype_name, sparse):
  _assert_close(_ref_variable_steps("/GPU:0", dtype_name, sparse),
                _ref_variable_steps("/CPU:0", dtype_name, sparse), dtype_name,
                "ref, sparse" if sparse else "ref, dense")


@needs_gpu
@needs_cuda_build
@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
def test_training_step_runs_entirely_on_the_gpu(use_resource):
  """Soft placement off: every op of the step must have a GPU kernel (dense, multi, sparse)."""
  with tf.Graph().as_default() as graph, tf.device("/GPU:0"):
    dense = [tf.compat.v1.Variable(tf.ones([64, 8]), use_resource=use_resource) for _ in range(3)]
    table = tf.compat.v1.Variable(tf.ones([100, 8]), use_resource=use_resource)
    ids = tf.constant([3, 7, 3, 99])
    loss = sum(tf.reduce_sum(tf.square(w)) for w in dense)
    loss += tf.reduce_sum(tf.square(tf.gather(table, ids)))
    train_op = tf_adam_op.AdamOptimizer(0.01).minimize(loss)
    config = tf.compat.v1.ConfigProto(allow_soft_placement=False)
    metadata = tf.compat.v1.RunMetadata()
    with tf.compat.v1.Session(graph=graph, config=config) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      session.run(train_op, options=tf.compat.v1.RunOptions(output_partition_graphs=True),
                  run_metadata=metadata)
  placed = {node.op: node.device for g in metadata.partition_graphs for node in g.node}
  ours = {op: device for op, device in placed.items() if "AdamV1" in op}
  assert ours and all("GPU" in device for device in ours.values()), ours


@needs_gpu
@needs_cuda_build
@pytest.mark.parametrize("kind", ["sparse", "lazy"])
def test_sparse_gpu_reruns_are_bit_identical(kind):
  """Duplicate indices are summed without atomics: two runs give the same bits."""
  first, second = (_run_steps("/GPU:0", "float32", kind) for _ in range(2))
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64))


@needs_gpu
@needs_cuda_build
def test_bad_sparse_index_is_rejected_on_the_gpu_and_nothing_changes():
  with tf.device("/GPU:0"):
    var, m, v = (tf.Variable(tf.fill([10, 3], float(i))) for i in range(3))
    before = [x.numpy() for x in (var, m, v)]
    with pytest.raises(tf.errors.InvalidArgumentError, match="indices\\[2\\] = 10"):
      ops.resource_sparse_apply_adam_v1(var.handle, m.handle, v.handle, 0.9, 0.999, 0.01, 0.9,
                                        0.999, 1e-8, tf.ones([3, 3]), tf.constant([1, 4, 10]))
    for a, b in zip([x.numpy() for x in (var, m, v)], before):
      np.testing.assert_array_equal(a, b)


@needs_gpu
@needs_cuda_build
def test_update_past_2_31_elements_on_the_gpu():
  n = 2**31 + 7
  try:
    with tf.device("/GPU:0"):
      var, m, v = (tf.Variable(tf.zeros([n], tf.float16)) for _ in range(3))
      grad = tf.ones([n], tf.float16)
  except tf.errors.ResourceExhaustedError:
    pytest.skip("the GPU lacks the 16 GiB this needs")
  with tf.device("/GPU:0"):
    ops.resource_apply_adam_v1(var.handle, m.handle, v.handle, 0.9, 0.999, 0.01, 0.9, 0.999, 1e-8,
                               grad)
    tail_m = m[-3:].numpy().astype(np.float32)
    head_m = m[:3].numpy().astype(np.float32)
  np.testing.assert_array_equal(tail_m, head_m)  # the last elements were reached: 64-bit indexing
  assert np.all(tail_m > 0)


def _run_8bit_steps(device, dtype_name, kind, steps=6, seed=3, jit_compile=False):
  """Steps of the 8-bit ops on `device` (each in a tf.function(jit_compile=True) with
  `jit_compile`: their XLA kernels): var, then each state's codes and scales."""
  rng = np.random.default_rng(seed)
  dtype = DTYPES[dtype_name]
  shape = (40, 130)  # 5,200 elements: 20 full blocks and a short one
  init = rng.standard_normal(shape).astype(dtype)
  grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
  index_batches = [rng.integers(0, shape[0], size=11) for _ in range(steps)]
  compute = ops.compute_dtype(TF_DTYPES[dtype_name])
  blocks = -(-init.size // 256)
  amsgrad = kind == "amsgrad"
  with tf.device(device):
    var = tf.Variable(init)
    pair = lambda: (tf.Variable(np.zeros(shape, np.uint8)), tf.Variable(np.zeros(blocks, np.float32)))
    states = [pair(), pair()] + ([pair()] if amsgrad else [])
    handles = [(c.handle, a.handle) for c, a in states]
    vhat = handles[2] if amsgrad else None
    def apply(scalars, grad, indices):
      if kind in ("dense", "amsgrad"):
        ops.resource_apply_adam_8bit(var.handle, *handles[:2], *scalars, grad, vhat_states=vhat)
      elif kind == "multi":
        if jit_compile:  # under XLA: the unpacked op (the packed one has no XLA kernel)
          ops.resource_apply_adam_8bit_multi_unpacked(
              [var.handle], ([handles[0][0]], [handles[0][1]]),
              ([handles[1][0]], [handles[1][1]]), *scalars, [grad])
        else:
          ops.resource_apply_adam_8bit_multi([var.handle], ([handles[0][0]], [handles[0][1]]),
                                             ([handles[1][0]], [handles[1][1]]), *scalars, [grad])
      else:
        ops.resource_sparse_apply_adam_8bit(var.handle, *handles[:2], *scalars,
                                            tf.gather(grad, tf.range(11)), indices,
                                            lazy=kind == "lazy")
    if jit_compile:
      apply = tf.function(apply, jit_compile=True)
    for step in range(steps):
      scalars = [tf.constant(x, compute) for x in (0.9 ** (step + 1), 0.999 ** (step + 1), 0.01,
                                                   0.9, 0.999, 1e-7)]
      apply(scalars, tf.constant(grads[step]), tf.constant(index_batches[step]))
    return [var.numpy()] + [x.numpy() for pair_ in states for x in pair_]


@needs_gpu
@needs_cuda_build
@pytest.mark.parametrize("kind", ["dense", "amsgrad", "multi", "sparse", "lazy"])
@pytest.mark.parametrize("dtype_name", DTYPES.keys())
def test_8bit_ops_on_the_gpu_equal_the_cpu_bit_for_bit(dtype_name, kind):
  """The CUDA kernels run the core's own block functions, compiled without FMA: the same codes,
  scales and variables as the CPU kernels (the CPU emulation of their bodies shows it; this is
  the check on a real GPU)."""
  gpu, cpu = _run_8bit_steps("/GPU:0", dtype_name, kind), _run_8bit_steps("/CPU:0", dtype_name, kind)
  for name, a, b in zip(("var", "m codes", "m scales", "v codes", "v scales", "vhat codes",
                         "vhat scales"), gpu, cpu):
    np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8),
                                  err_msg=f"{name} ({kind}, {dtype_name})")


@needs_gpu
@needs_cuda_build
@pytest.mark.skipif(not _loader.xla_kernels()[0], reason="built without the XLA kernels")
@pytest.mark.parametrize("kind", ["dense", "amsgrad", "multi", "sparse", "lazy"])
@pytest.mark.parametrize("dtype_name", DTYPES.keys())
def test_8bit_ops_under_xla_on_the_gpu_equal_the_cpu_bit_for_bit(dtype_name, kind):
  """Under XLA on a GPU the 8-bit ops' custom calls run the same CUDA kernels
  (gpu_8bit_custom_calls.cc): the CPU op's codes, scales and variables."""
  gpu = _run_8bit_steps("/GPU:0", dtype_name, kind, jit_compile=True)
  cpu = _run_8bit_steps("/CPU:0", dtype_name, kind)
  for name, a, b in zip(("var", "m codes", "m scales", "v codes", "v scales", "vhat codes",
                         "vhat scales"), gpu, cpu):
    np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8),
                                  err_msg=f"{name} ({kind}, {dtype_name}, XLA)")


@needs_gpu
@needs_cuda_build
def test_8bit_optimizer_steps_on_gpu_variables():
  """tf_adam_op.AdamOptimizer(state_bits=8) on GPU variables, several of them (one multi-tensor op,
  the scale check first): the CPU's numbers."""
  rng = np.random.default_rng(4)
  values = [rng.standard_normal(s).astype(np.float32) for s in [(4096,), (70, 90)]]
  grads = [[rng.standard_normal(v.shape).astype(np.float32) for v in values] for _ in range(3)]
  results = []
  for device in ("/GPU:0", "/CPU:0"):
    with tf.device(device):
      variables = [tf.Variable(v) for v in values]
      opt = tf_adam_op.AdamOptimizer(0.01, state_bits=8)
      for gs in grads:
        opt.apply_gradients([(tf.constant(g), v) for g, v in zip(gs, variables)])
      results.append([v.numpy() for v in variables])
  for a, b in zip(*results):
    np.testing.assert_array_equal(a, b)
