"""Compiled kernels behind the layers, each beside the NumPy reference it is tested against.

A module per concern, named after its maths (pool: max pooling and its argmax; epilogue: bias +
activation after a product and the activation's gradient; batchnorm: the normalisation's
elementwise passes). Each public kernel picks its backend when called:
- FRAN_KERNELS=numba (the default when Numba imports) runs the @jit twins below: one thread,
  no GIL held (fran's own threads may run them at once), compiled at the first call for the
  dtypes and layouts that call brings, and cached on disk (beside the source in __pycache__, else
  in ~/.cache/numba, or NUMBA_CACHE_DIR), so a later process loads them in a fraction of a second;
  where no cache directory is writable they compile uncached, every process;
- FRAN_KERNELS=numpy runs the references, and so does a process where Numba does not import (not
  installed, or a Python it does not support yet), after one warning.
The twins compute the same operations in the same order as the references wherever the layer
tests say bitwise (tests/test_kernels_backends.py), so a model trains to the same bits on both.
`import fran` never imports Numba; the first kernel call does.
"""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager

ENV = "FRAN_KERNELS"
BACKENDS = ("numba", "numpy")

_backend: str | None = None
_lock = threading.Lock()


def backend() -> str:
    """The kernels' backend for this process, "numba" or "numpy" (chosen at the first call)."""
    global _backend
    if _backend is None:
        with _lock:
            if _backend is None:
                _backend = _choose()
    return _backend


def compiled() -> bool:
    """Whether kernels run their compiled twins."""
    return backend() == "numba"


def _choose() -> str:
    asked = os.environ.get(ENV, "").strip().lower()
    if asked not in ("", *BACKENDS):
        raise ValueError(f"{ENV}: expected one of {', '.join(BACKENDS)}, got {asked!r}")
    if asked == "numpy":
        return "numpy"
    try:
        import numba  # noqa: F401
    except Exception as exc:  # not installed, or a Numba that does not support this Python
        if asked == "numba":
            raise ImportError(f"{ENV}=numba, but Numba does not import: {exc}") from exc
        warnings.warn(
            f"fran.kernels: Numba does not import ({exc}); running the NumPy kernels (slower). "
            f"Install fran[kernels], or set {ENV}=numpy to choose them and silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "numpy"
    return "numba"


@contextmanager
def using(name: str):
    """Run the block on the given backend (tests and benchmarks compare the two in one process)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"fran.kernels.using: expected one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "numba":
        import numba  # noqa: F401  (raises here, not inside a kernel)
    old = backend()
    _backend = name
    try:
        yield
    finally:
        _backend = old


class jit:
    """@jit marks a Numba twin: compiled (nopython, nogil, one thread, cached) at its first call."""

    def __init__(self, py_func):
        self.py_func = py_func
        self.__name__, self.__doc__ = py_func.__name__, py_func.__doc__
        self._dispatcher = None

    def __call__(self, *args):
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    self._dispatcher = _compile(self.py_func)
        return self._dispatcher(*args)


def _compile(py_func):
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(py_func)
    except RuntimeError:  # "cannot cache function ...: no locator available": no writable dir
        return numba.njit(nogil=True)(py_func)
