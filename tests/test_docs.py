"""The documentation's Python examples run as written, and every page is reachable from the README.

An example that no longer runs (a renamed argument, a missing import, an undefined name) misleads
the reader more than no example, so every fenced ```python block in README.md and docs/*.md is run
on its own in a fresh interpreter, as a reader would paste it.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)


def python_blocks(page):
  """(line number of the opening fence, code) for each ```python block of `page`."""
  text = page.read_text()
  for match in FENCE.finditer(text):
    indent = len(match.group(1))
    code = "".join(line[indent:] for line in match.group(2).splitlines(keepends=True))
    yield text.count("\n", 0, match.start()) + 1, code


BLOCKS = [pytest.param(code, id=f"{page.relative_to(ROOT)}:{line}")
          for page in PAGES for line, code in python_blocks(page)]


def _installed(module):
  return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("code", BLOCKS)
def test_example_runs(code, tmp_path):
  if "import tf_keras" in code and not _installed("tf_keras"):  # optional, as test_tf_keras.py
    pytest.skip("tf_keras is not installed (pip install 'tf_keras==<your TF's minor>.*')")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, f"exit status {result.returncode}; stderr ends:\n{result.stderr[-3000:]}"


def test_readme_has_examples_and_links_every_page():
  readme = (ROOT / "README.md").read_text()
  assert list(python_blocks(ROOT / "README.md"))
  unlinked = [page.name for page in PAGES[1:] if f"](docs/{page.name}" not in readme]
  assert not unlinked, f"docs pages not linked from README.md: {unlinked}"


# --- Shell blocks: too slow to run here (they install and build), so CI runs them -------------
SHELL_FENCE = re.compile(r"^( *)```(?:bash|sh)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
# A block CI runs differently says why on the line above its fence: <!-- CI: ... -->
CI_NOTE = re.compile(r"<!-- CI: .+ -->\s*$")
# Creating and entering a venv: CI does it for every install, under its own names.
VENV_STEPS = re.compile(r"^(python3(\.\d+)? -m venv \S+|\. \S+/bin/activate)$")


def _normalized(command):
  return " ".join(command.replace('"', "").replace("'", "").split())


def shell_commands(page):
  """(line, command) for each command of each shell block of `page` that CI must run."""
  text = page.read_text()
  for match in SHELL_FENCE.finditer(text):
    before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
    if CI_NOTE.search(before):
      continue
    line = text.count("\n", 0, match.start()) + 1
    for command in re.split(r"&&|\n", match.group(2)):
      command = _normalized(command)
      if command and not command.startswith("#") and not VENV_STEPS.match(command):
        yield line, command


def test_every_shell_command_in_the_docs_is_one_ci_runs():
  """Each command of each shell block is in .ci/run (quotes aside), so a clean clone runs what
  the pages tell readers to type; a block CI runs otherwise says how, in a comment above it."""
  ci = _normalized((ROOT / ".ci" / "run").read_text())
  missing = [f"{page.relative_to(ROOT)}:{line}: {command}"
             for page in PAGES for line, command in shell_commands(page) if command not in ci]
  assert not missing, "commands CI does not run:\n" + "\n".join(missing)
