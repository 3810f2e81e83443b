"""`./run`, the README's two commands, set up from nothing: a scratch copy of the script with a
one-line tox.ini, no .venv yet. It must make .venv with `python -m venv`, install tox there (from
PyPI, or offline from pip's cache once it has been fetched), run the tox env, and reuse all of it
the second time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "run"

TOX_INI = """\
[tox]
env_list = hello

[testenv:hello]
skip_install = true
commands = python -c "import sys; print('hello from', sys.prefix)"
"""


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOX_", "VIRTUAL_ENV"))}
    env["PYTHON"] = sys.executable
    return subprocess.run(
        ["sh", str(folder / "run"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_bootstraps_a_venv_with_tox_and_runs_the_env(tmp_path):
    shutil.copy(RUN, tmp_path / "run")
    (tmp_path / "tox.ini").write_text(TOX_INI)
    first = _run(tmp_path, "hello")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "creating .venv" in first.stdout and "installing tox into .venv" in first.stdout
    assert f"hello from {tmp_path / '.tox' / 'hello'}" in first.stdout
    assert (tmp_path / ".venv" / "bin" / "tox").exists()

    again = _run(tmp_path, "hello")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "creating" not in again.stdout and "installing tox" not in again.stdout


def test_run_without_arguments_prints_its_usage(tmp_path):
    shutil.copy(RUN, tmp_path / "run")
    result = _run(tmp_path)
    assert result.returncode == 2
    assert "./run lenet5" in result.stderr and "./run tests,oracle,lint,docs" in result.stderr


def test_ci_runs_exactly_the_readmes_test_command():
    root = RUN.parent
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    assert "./run tests,oracle,lint,docs   # the whole test suite" in readme
    assert ci.strip().splitlines()[-1] == "./run tests,oracle,lint,docs"
