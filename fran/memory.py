"""Keep freed memory in the process for reuse: glibc's malloc settings for array-heavy loops.

Every NumPy temporary is a fresh malloc. glibc serves large blocks (from 128 kB, a threshold it
raises as it goes) with mmap and gives memory back to the kernel when the top of its heap holds
more than a trim threshold. A training step frees its big temporaries (patch matrices,
activations, their gradients) at the end and allocates the same sizes again on the next batch,
so each of those arrays comes back as fresh pages, and the kernel zeroes every page on its first
touch. Measured here (train_step, batch 64, one thread): LeNet-5 took 1,278 page faults a step
and 8.9 ms; with the two settings below 3 faults and 6.0 ms. The Fashion-MNIST CNN went from
43.5 to 29 ms a step, the autoencoder from 48.8 to 26.8 ms. (CPU tuning guides for PyTorch do the
same by preloading jemalloc or tcmalloc.)

keep_freed_memory() applies three settings (mallopt), when a program asks for them:
- M_MMAP_THRESHOLD = 32 MiB (glibc's documented maximum): blocks smaller than that come from the
  heap instead of fresh mmap'd pages. (Setting it also stops glibc raising it dynamically.)
- M_TRIM_THRESHOLD = 256 MiB: freed memory at the top of the heap, up to that much, stays in the
  process instead of going back to the kernel.
- M_ARENA_MAX = 1: every thread allocates from the one main arena. Without it glibc gives threads
  their own arenas (up to 8 per core), so a block freed by one of fran's batch-piece threads
  (fran.parallel) would sit in that thread's arena, each arena would keep its own 256 MiB of
  freed memory, and the process could hold several times the memory it needs.
They are process-wide, so they also apply to anything else in the process, which is why
`import fran` does not make them: a program opts in by calling fran.memory.keep_freed_memory()
(fran's examples and benchmarks/bench.py do; bench.py's PyTorch peak-memory child sets
FRAN_MALLOC_TUNING=0). The cost is that a process keeps up to 256 MiB of freed memory instead of
returning it, and fran's threads share one arena's lock. FRAN_MALLOC_TUNING=0 makes the call do
nothing; fran.memory.applied says whether the settings were made. On other C libraries (macOS,
Windows, musl) nothing is changed. What leaving them unset costs: benchmarks/README.md.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
ENV = "FRAN_MALLOC_TUNING"

applied: bool = False  # whether keep_freed_memory() changed the settings in this process


def _is_glibc() -> bool:
    """Whether the C library is glibc (os.confstr is cheap; the platform module costs 12 ms)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system, or not POSIX
        return False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds and a single arena (see the module docstring); True
    if all three were set.

    Does nothing, and returns False, when FRAN_MALLOC_TUNING=0 or the C library is not glibc.
    """
    global applied
    if os.environ.get(ENV, "1").strip() == "0" or not _is_glibc():
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter itself is linked with
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
        ok = libc.mallopt(M_ARENA_MAX, 1) == 1 and ok
    except (OSError, AttributeError):
        return False
    applied = ok
    return ok
