"""fran.data stays out of the core: `import fran` loads neither it nor pooch; the old name
fran.datasets is the same API, and both command lines work."""

from __future__ import annotations

import subprocess
import sys

from helpers.subprocess_python import run_python


def test_import_fran_does_not_import_the_data_package():
    out = run_python(
        """
        import json, sys
        import fran
        heavy = ["fran.data", "fran.datasets", "pooch", "requests"]
        print(json.dumps({"loaded": [m for m in heavy if m in sys.modules]}))
        """
    )
    assert out["loaded"] == []


def test_the_old_name_is_the_same_api():
    import fran.data
    import fran.datasets

    for name in fran.datasets.__all__:
        if name != "main":
            assert getattr(fran.datasets, name) is getattr(fran.data, name), name


def test_both_command_lines(tmp_path):
    for module in ("fran.data", "fran.datasets"):
        run = subprocess.run(
            [sys.executable, "-m", module, "fetch", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert f"python -m {module} fetch" in run.stdout


def test_importing_every_data_module_runs_nothing():
    out = run_python(
        """
        import importlib, json, pkgutil
        import fran.data
        names = [m.name for m in pkgutil.walk_packages(fran.data.__path__, "fran.data.")]
        for name in names:
            importlib.import_module(name)
        print(json.dumps({"names": sorted(names)}))
        """
    )
    assert "fran.data.__main__" in out["names"] and "fran.data.store" in out["names"]
