"""Commit subjects are at most 72 characters (git's own advice: `git log --oneline` and the
tools built on it cut the rest). Checked from SINCE on, the first commit written under the rule;
older history keeps its longer subjects (rewriting landed history would change every hash).
Skipped outside a git checkout, or in a clone too shallow to hold SINCE."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SINCE = "4b112ff"  # tests import nothing from benchmarks/: the twins live in tests/helpers
LIMIT = 72


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def long_subjects(lines: list[str], limit: int = LIMIT) -> list[str]:
    """The `hash subject` lines whose subject is longer than `limit`."""
    return [line for line in lines if len(line.partition(" ")[2]) > limit]


def test_a_long_subject_is_found():
    subject = "x" * 73
    assert long_subjects([f"abc {subject}", f"def {'y' * 72}"]) == [f"abc {subject}"]


def test_every_commit_subject_since_the_rule_is_at_most_72_characters():
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    if _git("cat-file", "-e", f"{SINCE}^{{commit}}").returncode != 0:
        pytest.skip(f"{SINCE} is not in this clone (a shallow one?)")
    log = _git("log", "--format=%h %s", f"{SINCE}^..HEAD")
    assert log.returncode == 0, log.stderr
    assert long_subjects(log.stdout.splitlines()) == []
