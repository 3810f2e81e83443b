"""Run examples/lenet5_mnist.py's command line on synthetic MNIST under an address-space limit.

Run by tests/test_reliability_memory.py. Everything is imported first (NumPy, matplotlib, the
example) and OpenBLAS's work buffer mapped, then RLIMIT_AS is set to the address space in use now plus --headroom-mib, and the
script's own cli runs the remaining arguments. Prints one JSON line on stdout at the end (also
after an error): the address space when the limit was set and the process's peak, in KiB.

    python tests/helpers/memory_worker.py [--headroom-mib M] -- SCRIPT ARGS...
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def synthetic(split: str = "train", n: int | None = None, root=None, download: bool = True):
    """Random images in [0, 1] and labels 0..9 in the real loaders' shapes (no dataset files)."""
    n = {"train": 60000, "test": 10000}[split] if n is None else n
    rng = np.random.default_rng(0 if split == "train" else 1)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def status_kib(field: str) -> int:
    """A VmSize/VmPeak line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def main() -> None:
    # imported here, not at the top: pytest-markdown-docs imports this file to read its docstrings,
    # and examples/ left on sys.path makes examples/fran_avgpool/ shadow the plugin (a namespace
    # package found before an editable install's finder)
    sys.path.insert(0, str(EXAMPLES))
    import lenet5_mnist

    import fran.data

    argv = sys.argv[1:]
    headroom = None
    if argv[:1] == ["--headroom-mib"]:
        headroom, argv = int(argv[1]), argv[2:]
    assert argv[0] == "--", argv
    fran.data.load_mnist = synthetic
    # OpenBLAS maps its work buffer at its first product and, if that fails, exits the process
    # with its own message (no MemoryError for Python to catch): map it before the limit, as any
    # run that has trained a step already has
    for dtype in (np.float32, np.float64):
        np.ones((256, 256), dtype) @ np.ones((256, 256), dtype)
    at_limit = status_kib("VmSize")
    if headroom is not None:
        limit = (at_limit + headroom * 1024) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.argv = ["lenet5_mnist.py", *argv[1:]]
    code = 0
    try:
        lenet5_mnist._common.cli(lenet5_mnist.main)
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"at_limit_kib": at_limit, "peak_kib": status_kib("VmPeak")}), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
