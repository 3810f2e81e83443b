"""The oracle tests compare fran with PyTorch autograd: without torch each file is one skip.

So plain `pytest` after `pip install '.[test]'` (no torch) runs the unit tests and reports these
files as skipped, with the reason, instead of failing at collection on `import torch`;
`./run oracle` (tox.ini) installs torch and runs them. (Not pytest.importorskip at the top of
this file: given as `pytest tests/oracle`, a conftest's skip is an error, not a skip.)
"""

from __future__ import annotations

import importlib.util

import pytest

REASON = "needs PyTorch, the oracle (not installed): `./run oracle`, or pip install torch"
HAVE_TORCH = importlib.util.find_spec("torch") is not None


class WithoutTorch(pytest.File):
    """A test file that is not imported: collecting it is a skip with the reason."""

    def collect(self):
        pytest.skip(REASON)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    if not HAVE_TORCH:
        return WithoutTorch.from_parent(parent, path=module_path)
    return None
