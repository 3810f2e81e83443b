"""Run a snippet in a fresh interpreter (shared by the registry and plugin tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fran


def run_python(code: str, *paths: Path) -> dict:
    """Run `code` in a fresh interpreter that sees `paths` and this fran; return its JSON output."""
    fran_root = Path(fran.__file__).resolve().parents[1]
    path = [str(p) for p in (*paths, fran_root)] + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    env.pop("FRAN_DISABLE_PLUGIN_AUTOLOAD", None)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])
