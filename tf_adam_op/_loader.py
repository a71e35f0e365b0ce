"""Finds and loads the compiled op library, once, checking it matches the installed TensorFlow.

A custom op library is tied to the TensorFlow it was compiled against: loading it into another TF
fails with undefined symbols at best. So the TF version recorded at build time is compared first,
and every failure is an ImportError that says which file, which versions, and how to rebuild.
"""

import functools
import os

import tensorflow as tf

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _major_minor(version):
  return tuple(version.split(".")[:2])


# Rebuilding against the TensorFlow that is installed: without build isolation, pip builds with the
# environment's own TF (an isolated build would fetch the newest one the pin allows again).
_REBUILD = ("pip install scikit-build-core pybind11 cmake ninja && "
            "pip install --no-build-isolation --no-deps --force-reinstall .")


def _import_error(problem, path, built_for):
  if built_for == "unknown":
    fix = f"Build and install it, from the tf_adam_op source directory:\n  {_REBUILD}"
  else:
    fix = (f"Either install the TensorFlow it was built for (pip install tensorflow=={built_for}) or\n"
           f"rebuild it against the installed one, from the tf_adam_op source directory:\n"
           f"  {_REBUILD}")
  return ImportError(
      f"tf_adam_op: {problem}\n"
      f"  op library: {path}\n"
      f"  built for TensorFlow: {built_for}\n"
      f"  TensorFlow found:     {tf.__version__}\n"
      f"{fix}")


def check_library(path, built_for):
  """Raises ImportError when the library at `path`, built for TF `built_for`, cannot be loaded."""
  if not os.path.isfile(path):
    raise _import_error("the compiled op library is missing.", path, built_for)
  if _major_minor(built_for) != _major_minor(tf.__version__):
    raise _import_error("the op library was built for another TensorFlow version.", path, built_for)


@functools.lru_cache(maxsize=None)
def op_library():
  """The loaded op library module (its generated Python wrappers); loaded on first use."""
  try:
    from tf_adam_op import _build_info  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    problem = "the package was not built (no _build_info.py)."
    if os.path.isfile(os.path.join(_PACKAGE_DIR, os.pardir, "pyproject.toml")):
      problem += (f"\n  Python imported the source checkout {_PACKAGE_DIR}, which shadows the installed"
                  "\n  package: run from another directory, use `python -P`, or the `tf-adam-op` command.")
    raise _import_error(problem, os.path.join(_PACKAGE_DIR, "_tf_adam_op_ops.so"), "unknown") from e
  path = os.path.join(_PACKAGE_DIR, _build_info.OP_LIBRARY)
  check_library(path, _build_info.TF_VERSION)
  try:
    return tf.load_op_library(path)
  except tf.errors.NotFoundError as e:  # undefined symbols: an ABI mismatch despite the version
    raise _import_error(f"the op library could not be loaded: {e}", path,
                        _build_info.TF_VERSION) from e
