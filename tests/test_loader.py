"""BAD_INPUTS 32: a missing op library, or one built for another TensorFlow, is an ImportError at
import that names the file, both versions and how to rebuild."""

import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

import tf_adam_op

PACKAGE_DIR = os.path.dirname(tf_adam_op.__file__)


@pytest.fixture
def package_copy(tmp_path):
  """A copy of the installed package, importable from tmp_path, to break on purpose."""
  shutil.copytree(PACKAGE_DIR, tmp_path / "tf_adam_op",
                  ignore=shutil.ignore_patterns("__pycache__"))
  return tmp_path


def _import_in_subprocess(path):
  env = dict(os.environ, PYTHONPATH=str(path), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-c", "import tf_adam_op"], capture_output=True,
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
  assert "pip install tensorflow==2.19.0" in result.stderr
  assert "--no-build-isolation" in result.stderr  # a rebuild against the installed TF


def test_unbuilt_package_is_an_import_error(package_copy):
  (package_copy / "tf_adam_op" / "_build_info.py").unlink()
  result = _import_in_subprocess(package_copy)
  assert result.returncode != 0
  assert "the package was not built" in result.stderr
  assert "tensorflow==unknown" not in result.stderr
