"""The command line is quiet and quick: `--help` imports no TensorFlow, and demo, info and the
cluster demo print only the program's own output (TF's log lines, e.g. "failed call to cuInit" on
a machine without a GPU, only with --verbose), both as `tf-adam-op` and as `python -m tf_adam_op`.
Checked by what is imported and printed, not by timing (shared machines are noisy)."""

import os
import shutil
import subprocess
import sys

import pytest

# Where pip put the console script: beside this interpreter.
COMMAND = shutil.which("tf-adam-op", path=os.path.dirname(sys.executable))
LAUNCHERS = {"python -m tf_adam_op": [sys.executable, "-m", "tf_adam_op"]}
if COMMAND:
  LAUNCHERS["tf-adam-op"] = [COMMAND]


def _run(launcher, *args, importtime=False, cwd=None):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user has it
  if importtime:
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # the -X importtime report, on stderr
  return subprocess.run(LAUNCHERS[launcher] + list(args), capture_output=True, text=True,
                        env=env, timeout=600, cwd=cwd)


def test_the_console_script_is_installed():
  assert COMMAND, "tf-adam-op is not beside the interpreter: the package's entry point is missing"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_help_imports_no_tensorflow(launcher, tmp_path):
  result = _run(launcher, "--help", importtime=True, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "demo" in result.stdout and "bench" in result.stdout and "info" in result.stdout
  imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
              if line.startswith("import time:")]
  assert "tf_adam_op" in imported  # the report is there...
  assert not [name for name in imported if name.split(".")[0] == "tensorflow"]  # ...without TF


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_info_prints_only_its_own_output(launcher, tmp_path):
  info = _run(launcher, "info", cwd=tmp_path)
  assert info.returncode == 0, info.stderr[-2000:]
  assert info.stderr == ""
  assert "GPU kernels:" in info.stdout and "TensorFlow: built against" in info.stdout
  assert "XLA kernels:" in info.stdout


def test_demo_prints_only_its_own_output(tmp_path):
  """As the README runs it (the console script; both launchers start the same way: info)."""
  launcher = "tf-adam-op" if "tf-adam-op" in LAUNCHERS else "python -m tf_adam_op"
  demo = _run(launcher, "demo", "--steps", "5", "--quiet", cwd=tmp_path)
  assert demo.returncode == 0, demo.stderr[-2000:]
  assert demo.stderr == ""
  assert "loss curves IDENTICAL" in demo.stdout and "GPU kernels:" in demo.stdout


def test_the_cluster_demo_prints_no_tensorflow_log_lines(tmp_path):
  # 100 global steps: with fewer, one asynchronous worker may take too few to cut its loss tenfold
  result = _run("python -m tf_adam_op", "demo", "--cluster", "--steps", "100", "--quiet",
                cwd=tmp_path)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert result.stderr == ""  # e.g. no "Local rendezvous is aborting" warnings
  assert "worker 0:" in result.stdout and "trained" in result.stdout


def test_verbose_leaves_tensorflow_logging_alone(tmp_path):
  """With --verbose the CLI changes nothing of TF's logging: what TF prints depends on the machine,
  so the check is that the level the user set still applies (here: everything, level 0)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_MAX_VLOG_LEVEL="0")
  result = subprocess.run([sys.executable, "-c", (
      "import os, sys; sys.argv = ['tf-adam-op']; from tf_adam_op import __main__ as cli;"
      "cli.main(['info', '--verbose']); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")],
      capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines()[-1] == "0"


@pytest.mark.parametrize("command,module", [("demo", "tqdm"), ("bench", "matplotlib")])
def test_a_tool_without_the_tools_extra_says_how_to_install_it(command, module, tmp_path):
  """The library installs TensorFlow and NumPy only; the demo and the benchmark need the `tools`
  extra, and without it say so (exit 2) instead of a traceback."""
  hide = (f"import sys; sys.modules[{module!r}] = None; from tf_adam_op.__main__ import main; "
          f"sys.exit(main([{command!r}]))")
  result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
  assert result.returncode == 2, result.stderr[-2000:]
  assert module in result.stderr and 'pip install "tf_adam_op[tools]"' in result.stderr
  assert "Traceback" not in result.stderr


def test_the_library_does_not_require_the_tools():
  from importlib import metadata
  required = [r for r in metadata.requires("tf_adam_op") or [] if "extra ==" not in r]
  names = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
           for r in required}
  assert names == {"tensorflow", "numpy"}, required


# CI runs the README's demo command's demo in the test command's install (one build, not two):
# these two tests are what makes that the demo command's run. The test extra holds every package
# of the tools extra, and the demo imports none of the packages only the test extra brings.


def _extra_requirements(extra):
  from importlib import metadata

  from packaging.requirements import Requirement
  return {Requirement(r.split(";")[0]).name.lower().replace("_", "-")
          for r in metadata.requires("tf_adam_op") or [] if f'extra == "{extra}"' in r}


def _installed(distribution):
  from importlib import metadata
  try:
    return bool(metadata.distribution(distribution))
  except metadata.PackageNotFoundError:
    return False


def test_the_test_extra_installs_the_tools_extra():
  tools, test = _extra_requirements("tools"), _extra_requirements("test")
  assert tools and tools <= test, (tools, test)


def test_the_demo_runs_without_the_packages_only_the_test_extra_installs(tmp_path):
  from importlib import metadata
  only_for_tests = _extra_requirements("test") - _extra_requirements("tools")
  modules_of = {}  # distribution -> its top-level modules
  for module, distributions in metadata.packages_distributions().items():
    for name in distributions:
      modules_of.setdefault(name.lower().replace("_", "-"), []).append(module)
  modules = sorted(m for name in only_for_tests for m in modules_of.get(name, ()))
  # (pytest is there, running this; the rest where installed: CI's wheel venv has no hypothesis)
  assert "pytest" in modules and all(modules_of.get(name) for name in only_for_tests
                                     if _installed(name)), (only_for_tests, modules)
  hide = (f"import sys; sys.modules.update(dict.fromkeys({modules!r})); "
          "from tf_adam_op.__main__ import main; "
          "sys.exit(main(['demo', '--steps', '5', '--quiet']))")
  result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "loss curves IDENTICAL" in result.stdout
