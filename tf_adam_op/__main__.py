"""Command line: `tf-adam-op {demo,bench,info}`, also `python -m tf_adam_op ...`.

TensorFlow is imported only by the subcommands, after its log level is set: without --verbose
only this program's output shows (TF's start-up lines, e.g. "failed call to cuInit" on a machine
without a GPU, are noise here; errors still raise). `tf_adam_op/__init__.py` leaves TF alone when
the package is imported on the way to this CLI, which keeps `--help` instant.
"""

import argparse
import importlib
import os
import sys
import warnings


def _drop_native_stderr():
  """From here on, what C++ code writes to file descriptor 2 is dropped, while Python's sys.stderr
  (progress bars, warnings, tracebacks, our messages) still goes to the original stderr.

  TensorFlow logs from C++ where no log level reaches, differently in each version: TF 2.21 while
  its libraries load ("All log messages before absl::InitializeLog() is called are written to
  STDERR", oneDNN, CUDA drivers), TF 2.18 through absl after the import ("MLIR V1 optimization pass
  is not enabled", gRPC servers). --verbose keeps all of it.
  """
  sys.stderr.flush()
  original = os.dup(2)
  sys.stderr = os.fdopen(original, "w", buffering=1, encoding=sys.stderr.encoding,
                         errors="backslashreplace")
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)


def _quiet_tensorflow():
  """Only this program's output: TF's log lines hidden (errors still raise, with their messages)."""
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TF's own C++ logs, where it applies (read at import)
  warnings.filterwarnings("ignore")  # e.g. deprecation warnings of the tf.compat.v1 APIs used
  _drop_native_stderr()
  import tensorflow as tf
  tf.get_logger().setLevel("ERROR")  # Python-side logs ("WARNING:tensorflow:...")


def _info(_args):
  import tensorflow as tf
  import tf_adam_op
  tf_adam_op.load()  # first: what to do when the package is not built, or for another TF
  from tf_adam_op import _build_info, _build_summary, _core
  facts = _core.build_info()
  print(f"tf_adam_op {tf_adam_op.__version__} at {os.path.dirname(tf_adam_op.__file__)}")
  print(f"TensorFlow: built against {_build_info.TF_VERSION}, running {tf.__version__}")
  print(f"compiler: {facts['compiler']}")
  simd = tf_adam_op.ops._op_library.tf_adam_op_cpu_simd().numpy().decode()
  print(f"CPU loop: {simd} (widest the CPU has; TF_ADAM_OP_CPU_SIMD=avx2|baseline picks a narrower one)")
  codec = tf_adam_op.ops._op_library.tf_adam_op_cpu8bit_codec().numpy().decode()
  print(f"CPU 8-bit state codec (float32): {codec} (avx512 needs AVX-512 F, BW, DQ and VBMI)")
  print(_build_summary.cuda_kernels())
  from tf_adam_op._step import xla
  print(xla.describe())
  print(f"TensorFlow built with CUDA: {'yes' if tf.test.is_built_with_cuda() else 'no'}")
  gpus = tf.config.list_physical_devices("GPU")
  print(f"GPUs visible: {len(gpus)}" + "".join(f"\n  {gpu.name}" for gpu in gpus))
  return 0


# What the tools (the demo, the benchmark) need beyond the library: the `tools` extra installs it.
_TOOL_MODULES = {"demo": ("tqdm",), "bench": ("tqdm", "matplotlib")}


def _missing_tools(command):
  """A message naming what `command` needs and how to install it, or None when all is there."""
  missing = []
  for module in _TOOL_MODULES[command]:
    try:
      importlib.import_module(module)
    except ImportError:
      missing.append(module)
  if not missing:
    return None
  return (f"tf-adam-op {command} needs {' and '.join(missing)}, which the library itself does not "
          "install: pip install \"tf_adam_op[tools]\" (in a checkout: pip install \".[tools]\")")


def _demo(args):
  from tf_adam_op import demo
  from tf_adam_op import _build_summary
  if args.cluster:
    return 0 if demo.run_cluster(steps=args.steps, quiet=args.quiet) else 1
  print(_build_summary.cuda_kernels())
  identical = demo.run(steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                       quiet=args.quiet)
  return 0 if identical else 1


def _bench(args):
  from tf_adam_op import bench
  try:
    bench.main(args.workload, args.mode, args.impl, args.steps, args.scale, args.json, args.png,
               seed=args.seed, quiet=args.quiet, device_name=args.device)
  except bench.NoGpuError as error:
    print(f"tf-adam-op bench: {error}", file=sys.stderr)
    return 2
  return 0


def _parser():
  parser = argparse.ArgumentParser(prog="tf-adam-op", description=__doc__.splitlines()[0])
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--verbose", action="store_true",
                      help="also show TensorFlow's own log lines and warnings (and anything "
                      "else its C++ code prints)")
  commands = parser.add_subparsers(dest="command", required=True)
  demo = commands.add_parser("demo", parents=[common],
                             help="train a small model with stock Adam and with ours")
  demo.add_argument("--steps", type=int, default=300)
  demo.add_argument("--batch-size", type=int, default=256)
  demo.add_argument("--seed", type=int, default=0)
  demo.add_argument("--quiet", action="store_true", help="no progress bars")
  demo.add_argument("--cluster", action="store_true",
                    help="instead: parameter-server training on a local 1-ps, 2-worker cluster")
  demo.set_defaults(run=_demo)
  bench = commands.add_parser(
      "bench", parents=[common],
      help="time stock Adam (and AdamW, AMSGrad), ours and torch's fused Adam; table, JSON, PNG")
  workloads = ["large", "many", "mixed", "sparse"]
  modes = ["eager", "tf.function", "tf1-ref", "tf1-resource"]
  # On request: tf.function(jit_compile=True), and a Keras 3 model's train_on_batch without / with
  # XLA (Keras 3 optimizers only).
  optional_modes = ["xla", "fit", "fit-xla"]
  # The names of tf_adam_op.bench.IMPLEMENTATIONS and TORCH (not imported here: --help needs no TF).
  implementations = ["stock", "ours", "ours lazy", "stock adamw", "ours adamw", "stock amsgrad",
                     "ours amsgrad", "keras adam", "ours keras", "ours 8-bit", "ours keras 8-bit",
                     "torch fused", "bitsandbytes 8-bit"]
  bench.add_argument("--workload", nargs="+", choices=workloads, default=workloads)
  bench.add_argument("--mode", nargs="+", choices=modes + optional_modes, default=modes)
  bench.add_argument("--impl", nargs="+", choices=implementations, default=implementations,
                     help="torch fused runs when torch is installed (pip install torch)")
  bench.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                     help="run on the CPU, or on the first GPU (bandwidth: a device-to-device copy)")
  bench.add_argument("--steps", type=int, default=20, help="timed steps per implementation")
  bench.add_argument("--scale", type=float, default=1.0,
                     help="scale every workload's first dimension (quick runs)")
  bench.add_argument("--json", default="tf_adam_op_bench.json", help="JSON output path")
  bench.add_argument("--png", default="tf_adam_op_bench.png", help="PNG chart path")
  bench.add_argument("--seed", type=int, default=0)
  bench.add_argument("--quiet", action="store_true", help="no progress bars")
  bench.set_defaults(run=_bench)
  info = commands.add_parser("info", parents=[common], help="print the build facts")
  info.set_defaults(run=_info)
  return parser


def main(argv=None):
  args = _parser().parse_args(argv)
  missing = _missing_tools(args.command) if args.command in _TOOL_MODULES else None
  if missing:
    print(missing, file=sys.stderr)
    return 2
  try:
    if not args.verbose:
      _quiet_tensorflow()
    return args.run(args)
  except ImportError as error:  # TF missing, or the op library (the message says what to do)
    print(f"tf-adam-op: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
