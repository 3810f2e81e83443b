"""Hypothesis profiles: `dev` (few examples, for editing) and `ci` (derandomized, the tox default).

Pick one with HYPOTHESIS_PROFILE=dev|ci; unset means dev. tox sets ci.

FRAN_FRESH_SEED=1 (or =<integer>) turns derandomization off and seeds hypothesis with a fresh
random seed (or that one), printed in the pytest header and summary so a failure can be replayed:
    FRAN_FRESH_SEED=1 python3 -m tox -e tests          # prints "hypothesis seed: 1234..."
    FRAN_FRESH_SEED=1234 python3 -m tox -e tests       # the same run again
CI stays deterministic: without the variable nothing changes.
"""

from __future__ import annotations

import importlib.util
import os
import random

import pytest
from hypothesis import HealthCheck, settings

# pytest-markdown-docs imports every .py file it is given to read its docstrings; the PyTorch twins
# in helpers/ import torch, so without torch (the `tests` env) they are not collected at all
if importlib.util.find_spec("torch") is None:
    collect_ignore = [
        "helpers/torch_models.py",
        "helpers/peer_twins.py",
        "helpers/char_lm_twins.py",
    ]

settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
FRESH = os.environ.get("FRAN_FRESH_SEED", "").strip()
SEED = None
if FRESH and FRESH != "0":
    SEED = random.randrange(2**32) if FRESH == "1" else int(FRESH)
    settings.register_profile("fresh", parent=settings.get_profile(PROFILE), derandomize=False)
    PROFILE = "fresh"
settings.load_profile(PROFILE)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if SEED is not None:  # read by hypothesis's pytest plugin, as --hypothesis-seed would be
        config.option.hypothesis_seed = SEED


def pytest_report_header(config):
    from fran import kernels  # the suite runs on this backend (FRAN_KERNELS; numba by default)

    lines = [f"fran kernels: {kernels.backend()}"]
    if SEED is not None:
        lines.append(f"hypothesis seed: {SEED} (replay with FRAN_FRESH_SEED={SEED})")
    return lines


def pytest_terminal_summary(terminalreporter):
    if SEED is not None:  # also at the end, as pytest -q shows no header
        terminalreporter.write_line(f"hypothesis seed: {SEED} (replay with FRAN_FRESH_SEED={SEED})")
