"""Importing fran changes no process-wide setting: in a fresh interpreter, everything a process can
read back about itself is the same before and after `import fran` (and the modules a program
imports beside it). glibc's malloc options cannot be read back; they are set only by
fran.memory.keep_freed_memory(), which nothing calls at import."""

from __future__ import annotations

from helpers.subprocess_python import run_python

SNAPSHOT = """
import faulthandler, json, locale, os, signal, sys, threading, warnings
import numpy as np
import threadpoolctl

def snapshot():
    handlers = {}
    for s in signal.valid_signals():
        try:
            handlers[str(s)] = repr(signal.getsignal(s))
        except (OSError, ValueError):
            pass
    return {
        "environ": dict(os.environ),
        "numpy errstate": np.geterr(),
        "numpy print options": {k: repr(v) for k, v in np.get_printoptions().items()},
        "numpy global rng": repr(np.random.get_state()[1][:4].tolist()),
        "warnings filters": [repr(f) for f in warnings.filters],
        "signal handlers": handlers,
        "blas threads": [
            (i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
        ],
        "threads": threading.active_count(),
        "recursion limit": sys.getrecursionlimit(),
        "switch interval": sys.getswitchinterval(),
        "faulthandler": faulthandler.is_enabled(),
        "hooks": [repr(sys.excepthook), repr(sys.displayhook), repr(sys.breakpointhook)],
        "locale": repr(locale.setlocale(locale.LC_ALL)),
        "umask": os.umask(os.umask(0o22)),
        "cwd": os.getcwd(),
    }

before = snapshot()
import fran, fran.data, fran.io, fran.testing, fran.validate  # noqa: E401
after = snapshot()
changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
print(json.dumps({"changed": changed, "imported": "fran" in sys.modules}))
"""


def test_importing_fran_changes_no_process_wide_setting():
    result = run_python(SNAPSHOT)
    assert result["imported"]
    assert result["changed"] == {}, result["changed"]
