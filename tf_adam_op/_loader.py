"""Finds and loads the compiled op library, once, checking it matches the running TensorFlow.

A custom op library is tied to the TensorFlow it was compiled against: loading it into another TF
fails with undefined symbols at best. So the TF version recorded at build time is compared first,
and every failure is an ImportError that says what is true and a command that fixes it.

The library is looked for beside `_build_info.py`, which the build installs next to it: in a normal
install both sit in the installed package; in an editable install (`pip install -e .`) the Python
sources are the checkout's while the built files live elsewhere (site-packages, or the build folder
when the install rebuilds on import), and scikit-build-core's import hook finds `_build_info` there.
"""

import functools
import importlib.metadata
import json
import os

import tensorflow as tf

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# The TensorFlow releases one source tree builds against (pyproject.toml says the same).
SUPPORTED_TF = ((2, 15), (2, 21))

# Rebuilding against the TensorFlow that is installed: without build isolation, pip builds with the
# environment's own TF (an isolated build would fetch the newest supported one again).
_REBUILD = ("pip install scikit-build-core pybind11 cmake ninja && "
            "pip install --no-build-isolation --no-deps --force-reinstall .")


def _major_minor(version):
  return tuple(int(part) for part in version.split(".")[:2])


def supported(version):
  low, high = SUPPORTED_TF
  return low <= _major_minor(version) <= high


def _supported_text():
  (low_major, low_minor), (high_major, high_minor) = SUPPORTED_TF
  return f"{low_major}.{low_minor} to {high_major}.{high_minor}"


def _fix(built_for):
  """The command(s) that make the op library match the running TensorFlow."""
  rebuild = f"from the tf_adam_op source directory:\n  {_REBUILD}"
  if not supported(tf.__version__):
    wanted = built_for or f"{SUPPORTED_TF[1][0]}.{SUPPORTED_TF[1][1]}.*"
    return (f"tf_adam_op supports TensorFlow {_supported_text()}, not {tf.__version__}: install one "
            f"of those (pip install 'tensorflow=={wanted}')" + ("." if built_for else
            f", then build the package against it, {rebuild}"))
  if built_for is None:
    return f"Build and install it against the installed TensorFlow, {rebuild}"
  if _major_minor(built_for) == _major_minor(tf.__version__):
    return f"Rebuild and reinstall it, {rebuild}"
  return (f"Either install the TensorFlow it was built for (pip install 'tensorflow=={built_for}') or\n"
          f"rebuild it against the installed one, {rebuild}")


def _import_error(problem, path, built_for, fix=None):
  return ImportError(
      f"tf_adam_op: {problem}\n"
      f"  op library: {path}\n"
      f"  built for TensorFlow: {built_for or '(not built)'}\n"
      f"  TensorFlow found:     {tf.__version__}\n"
      f"{fix or _fix(built_for)}")


def check_library(path, built_for):
  """Raises ImportError when the library at `path`, built for TF `built_for`, cannot be loaded."""
  if not os.path.isfile(path):
    raise _import_error("the compiled op library is missing.", path, built_for)
  if _major_minor(built_for) != _major_minor(tf.__version__):
    raise _import_error("the op library was built for another TensorFlow version.", path, built_for)


def _installation():
  """How tf_adam_op is installed: None, ("folder", its folder) or ("editable", the checkout URL)."""
  try:
    distribution = importlib.metadata.distribution("tf_adam_op")
  except importlib.metadata.PackageNotFoundError:
    return None
  folder = os.path.abspath(str(distribution.locate_file("tf_adam_op")))
  if os.path.isdir(folder):
    return "folder", folder
  return "editable", json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "?")


def _not_built_error():
  problem = f"the package imported from {_PACKAGE_DIR} was not built (it has no _build_info.py)."
  path = os.path.join(_PACKAGE_DIR, "_tf_adam_op_ops.so")
  checkout = os.path.dirname(_PACKAGE_DIR)
  if not os.path.isfile(os.path.join(checkout, "pyproject.toml")):
    return _import_error(problem, path, None)
  installed = _installation()
  if installed is None or installed == ("folder", _PACKAGE_DIR):
    return _import_error(problem + " It is a source checkout, and tf_adam_op is not installed.",
                         path, None)
  if installed == ("editable", "file://" + checkout):
    return _import_error(
        problem + " It is a source checkout installed in editable mode, whose built files are gone"
        " (a deleted build/ folder?).", path, None,
        fix=("Install it again, from the checkout: pip install scikit-build-core pybind11 cmake "
             "ninja && pip install --no-build-isolation -e .\n  (see the README, Developing)"))
  kind, where = installed
  used_instead = (f"the installed package, {where}," if kind == "folder" else
                  f"the editable install of tf_adam_op from {where}")
  return _import_error(
      problem + " It is a source checkout, imported because Python puts the current directory "
      f"first; {used_instead} is not used.", path, None,
      fix="Run from another directory to use what is installed, or develop in this checkout with "
          "an editable install of it:\n  pip install scikit-build-core pybind11 cmake ninja && "
          "pip install --no-build-isolation -e .\n  (see the README, Developing)")


def built_files_dir(build_info):
  """The folder holding the op library: the one the build put `_build_info.py` in."""
  return os.path.dirname(os.path.abspath(build_info.__file__))


@functools.lru_cache(maxsize=None)
def op_library():
  """The loaded op library module (its generated Python wrappers); loaded on first use."""
  try:
    from tf_adam_op import _build_info
  except ImportError as e:
    raise _not_built_error() from e
  path = os.path.join(built_files_dir(_build_info), _build_info.OP_LIBRARY)
  check_library(path, _build_info.TF_VERSION)
  try:
    return tf.load_op_library(path)
  except tf.errors.NotFoundError as e:  # undefined symbols: an ABI mismatch despite the version
    raise _import_error(f"the op library could not be loaded: {e}", path,
                        _build_info.TF_VERSION) from e


@functools.lru_cache(maxsize=None)
def xla_kernels():
  """(registered, why): whether this process has the XLA kernels of the ops, and what decided it.

  The XLA kernels are a second library, loaded after the op library: a build without them (an older
  TensorFlow, TF_ADAM_OP_XLA=OFF) or one that fails to load leaves the ops working and XLA steps on
  the composite path (tf_adam_op/_step/xla.py), with the reason here for `tf-adam-op info`.
  """
  op_library()
  from tf_adam_op import _build_info
  if not getattr(_build_info, "XLA_KERNELS_BUILT", False):
    return False, "not built (TensorFlow older than 2.21, or TF_ADAM_OP_XLA=OFF)"
  path = os.path.join(built_files_dir(_build_info), _build_info.XLA_LIBRARY)
  if not os.path.isfile(path):
    return False, f"missing: {path}"
  try:
    tf.load_library(path)
  except tf.errors.NotFoundError as e:
    return False, f"could not be loaded: {e}"
  return True, f"loaded from {path}"
