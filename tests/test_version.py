"""fran's version has one source, `fran.__version__` (fran/__init__.py), which every module reads
by importing fran; pyproject.toml declares it dynamic and setuptools takes it from there."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import fran

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?(\.post\d+)?(\.dev\d+)?", fran.__version__)


def test_pyproject_takes_the_version_from_fran_and_holds_none_of_its_own():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fran.__version__"}


def test_an_installed_fran_reports_the_same_version():
    try:
        installed = importlib.metadata.version("fran")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fran runs from a source checkout here (no package metadata)")
    assert installed == fran.__version__  # tox installs this checkout: its build read it
