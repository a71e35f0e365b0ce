"""docs/errors.md (loading): a missing op library, or one built for another TensorFlow, is an
ImportError at import that names the file, both versions and how to rebuild."""

import os
import shutil
import subprocess
import sys
import tomllib

import pytest
import tensorflow as tf

import tf_adam_op
from tf_adam_op import _build_info, _loader

PACKAGE_DIR = os.path.dirname(tf_adam_op.__file__)
BUILT_FILES_DIR = _loader.built_files_dir(_build_info)  # PACKAGE_DIR, unless an editable install

# The subprocess imports the copy, not the package under test: an editable install's import hook
# (scikit-build-core's, in sys.meta_path) would redirect `tf_adam_op` to the checkout.
_IMPORT_THE_COPY = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                    "if 'editable' not in type(f).__module__]; import tf_adam_op")


@pytest.fixture
def package_copy(tmp_path):
  """A copy of the installed package with its built files, importable from tmp_path, to break on
  purpose."""
  shutil.copytree(PACKAGE_DIR, tmp_path / "tf_adam_op",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in os.listdir(BUILT_FILES_DIR):
    if name.endswith(".so") or name == "_build_info.py":
      shutil.copy(os.path.join(BUILT_FILES_DIR, name), tmp_path / "tf_adam_op")
  return tmp_path


def _import_in_subprocess(path):
  env = dict(os.environ, PYTHONPATH=str(path), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-c", _IMPORT_THE_COPY], capture_output=True,
                        text=True, env=env, cwd=str(path), timeout=300)


def test_the_installed_library_loads():
  assert tf_adam_op.load() is tf_adam_op.load()  # loaded once
  assert hasattr(tf_adam_op.load(), "resource_apply_adam_v1")


def test_missing_library_is_an_import_error(package_copy):
  library = package_copy / "tf_adam_op" / "_tf_adam_op_ops.so"
  library.unlink()
  result = _import_in_subprocess(package_copy)
  assert result.returncode != 0
  assert "ImportError: tf_adam_op: the compiled op library is missing" in result.stderr
  assert "pip install 'tensorflow==" not in result.stderr  # it was built for the TF running
  assert str(library) in result.stderr
  assert f"TensorFlow found:     {tf.__version__}" in result.stderr
  assert "pip install --no-build-isolation --no-deps --force-reinstall ." in result.stderr


def test_library_built_for_another_tensorflow_is_an_import_error(package_copy):
  info = package_copy / "tf_adam_op" / "_build_info.py"
  info.write_text(info.read_text().replace(f'TF_VERSION = "{tf.__version__}"',
                                           'TF_VERSION = "2.19.0"'))
  result = _import_in_subprocess(package_copy)
  assert result.returncode != 0
  assert "built for another TensorFlow version" in result.stderr
  assert "built for TensorFlow: 2.19.0" in result.stderr
  assert f"TensorFlow found:     {tf.__version__}" in result.stderr
  assert "_tf_adam_op_ops.so" in result.stderr
  assert "pip install 'tensorflow==2.19.0'" in result.stderr
  assert "--no-build-isolation" in result.stderr  # a rebuild against the installed TF


def test_unbuilt_package_is_an_import_error(package_copy):
  (package_copy / "tf_adam_op" / "_build_info.py").unlink()
  result = _import_in_subprocess(package_copy)
  assert result.returncode != 0
  assert "was not built (it has no _build_info.py)" in result.stderr
  assert "tensorflow==unknown" not in result.stderr
  assert "pip install --no-build-isolation --no-deps --force-reinstall ." in result.stderr


def test_an_unbuilt_checkout_says_so_and_how_to_get_past_it(package_copy):
  """`python -m tf_adam_op` in a checkout that was installed (not editable) imports the checkout:
  the message says that the installed package is shadowed, and what to do."""
  (package_copy / "tf_adam_op" / "_build_info.py").unlink()
  (package_copy / "pyproject.toml").write_text("")
  result = _import_in_subprocess(package_copy)
  assert result.returncode != 0
  assert "It is a source checkout, imported because Python puts the current directory" in result.stderr
  assert "Run from another directory" in result.stderr
  assert "pip install --no-build-isolation -e ." in result.stderr  # builds against the TF there


def test_the_supported_range_is_the_one_pyproject_declares():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)
  (low_major, low_minor), (high_major, high_minor) = _loader.SUPPORTED_TF
  declared = f"tensorflow>={low_major}.{low_minor},<{high_major}.{high_minor + 1}"
  assert declared in project["build-system"]["requires"]
  assert declared in project["project"]["dependencies"]
  assert _loader.supported(tf.__version__)
  assert [_loader.supported(v) for v in ("2.14.1", "2.15.0", "2.21.4", "2.22.0", "3.0.0")] == [
      False, True, True, False, False]


def test_subpackages_are_reached_after_a_plain_import(tmp_path):
  """README: `tf_adam_op.keras.Adam` after `import tf_adam_op` (a fresh process, where nothing
  imported the subpackages before; run outside the checkout, which would shadow an installed
  package)."""
  code = ("import tf_adam_op, keras\n"
          "assert 'tf_adam_op.keras' not in __import__('sys').modules\n"
          "print(tf_adam_op.state_8bit.quantize.__name__)\n"
          "if keras.__version__.startswith('3'):\n"
          "  print(tf_adam_op.keras.Adam(0.1).__class__.__module__)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "quantize" in result.stdout
  import keras
  if keras.__version__.startswith("3"):
    assert "tf_adam_op.keras" in result.stdout
