"""tf_adam_op: a fused, exact drop-in for tf.compat.v1.train.AdamOptimizer.

    import tf_adam_op
    opt = tf_adam_op.AdamOptimizer(learning_rate=1e-3)   # instead of tf.compat.v1.train.AdamOptimizer
    opt = tf_adam_op.AdamWOptimizer(weight_decay=1e-4)   # TF1 contrib's AdamWOptimizer

`import tf_adam_op` imports TensorFlow and loads the op library (checked against the running
TensorFlow), so that the ops are registered from then on, e.g. before tf.saved_model.load.
"""

import importlib
import os
import sys

__all__ = ["AdamOptimizer", "AdamWOptimizer", "ops", "load", "__version__"]
__version__ = "0.1.0"

_COMMAND = "tf-adam-op"
_MODULES_RUN_AS_THE_COMMAND = ("tf_adam_op", "tf_adam_op.__main__")


def _started_as_the_command():
  """Whether this import is `tf-adam-op ...` or `python -m tf_adam_op ...` on its way to the CLI.

  Then the process runs nothing but the CLI, so TensorFlow is left to the subcommands that need it,
  which import it after setting its log level: `--help` is instant and TF's start-up log lines
  stay hidden. A console script's argv[0] is its path; while Python locates the module given to
  `-m`, argv[0] is "-m" and sys.orig_argv holds the command line (see the docs of sys.argv).
  """
  argv0 = sys.argv[0] if sys.argv else ""
  if os.path.basename(argv0) == _COMMAND:
    return True
  if argv0 == "-m" and "-m" in sys.orig_argv[1:-1]:
    return sys.orig_argv[sys.orig_argv.index("-m", 1) + 1] in _MODULES_RUN_AS_THE_COMMAND
  return False


# Subpackages `tf_adam_op.<name>` reaches after a plain `import tf_adam_op`, imported on first use
# (tf_adam_op.keras imports Keras 3, which a TF1-style user need not load).
_SUBPACKAGES = ("keras", "state_8bit")


def __getattr__(name):
  """The public names, on first use, when the CLI skipped importing them, and the subpackages on
  first use (PEP 562)."""
  if name in _SUBPACKAGES:
    return importlib.import_module(f"tf_adam_op.{name}")
  if name not in ("AdamOptimizer", "AdamWOptimizer", "ops", "load"):
    raise AttributeError(f"module 'tf_adam_op' has no attribute {name!r}")
  _import_public_names()
  return globals()[name]


def _import_public_names():
  # import_module, not `from tf_adam_op import ops`: that form would ask __getattr__ for `ops` first.
  global AdamOptimizer, AdamWOptimizer, ops, load
  ops = importlib.import_module("tf_adam_op.ops")
  load = importlib.import_module("tf_adam_op._loader").op_library
  AdamOptimizer = importlib.import_module("tf_adam_op.v1").AdamOptimizer
  AdamWOptimizer = importlib.import_module("tf_adam_op.v1").AdamWOptimizer


if not _started_as_the_command():
  _import_public_names()
