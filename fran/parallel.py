"""Using every core: a batch's pieces computed on parallel threads.

NumPy releases the GIL inside its kernels (copies, ufuncs, BLAS), and a layer declared per sample
acts on each sample of a batch separately, so the pieces of a batch can run at once on Python
threads:
- training (`batch_mean`): the batch is cut into one piece per thread; each thread computes its
  piece's mean loss and gradients, and the batch's are their means weighted by what each piece's
  mean is over (its samples, or the loss's count: a sequence loss's positions not ignored), so
  only the rounding differs from one piece.
- inference (`map_batches`): each batch of `batch_size` is cut the same way, so at most
  `batch_size` samples are in flight, as without threads.
While fran's threads run, NumPy's BLAS is held to one thread each (threadpoolctl): a
multithreaded OpenBLAS called from two threads at once queues the calls, which measured slower
than one thread. Measured on this 2-core machine, epochs against one thread with a 2-thread
BLAS: Fashion-MNIST CNN 5.79 -> 4.09 s, autoencoder 5.68 -> 4.02 s, LeNet-5 inference
0.26 -> 0.15 s; LeNet-5 training gains only ~7% (a step of 6.5 ms), because its many small NumPy
calls each hand the GIL from one thread to the other. Pieces smaller than half a batch of 64
measured no better for the Fashion-MNIST CNN and worse for LeNet-5.

Cutting a batch is sound only for layers whose outputs for a sample depend on that sample
alone, so a batch is cut only when every layer declares so (fran.registry: per_sample) and, in
training, none is random or stateful; any other network computes each batch whole
(split=False); inside that whole-batch region the kernels cut their large products into blocks
that depend on the shapes only, and for_pieces computes the blocks on fran's threads
(fran/layers/_gemm.py), so the results are the same for any thread count.

The thread count is the number of CPUs this process may use, or FRAN_NUM_THREADS if set;
FRAN_NUM_THREADS=1 computes everything on the calling thread and, except for whole batches
(whose results must not depend on threads; a multithreaded OpenBLAS partitions its sums by its
thread count), leaves BLAS alone. Results of cut batches depend on the thread count only in the
last bits (the order of the sums).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from fran.tree import tree_map

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

ENV = "FRAN_NUM_THREADS"
MIN_PIECE = 16  # samples: a training batch is split only into pieces at least this big

_pool: ThreadPoolExecutor | None = None
_region = threading.local()  # .whole: this thread computes a batch whole (batch_mean(split=False))
_blas = None  # threadpoolctl.ThreadpoolController, made on first use
_lock = threading.Lock()


def num_threads() -> int:
    """FRAN_NUM_THREADS if set, else the number of CPUs this process may run on."""
    value = os.environ.get(ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{ENV} must be a positive integer, got {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _executor(threads: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # on first use: import fran stays fast

    global _pool
    with _lock:
        if _pool is None or _pool._max_workers != threads:
            if _pool is not None:  # FRAN_NUM_THREADS changed: let the old threads end
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="fran")
        return _pool


def _one_blas_thread():
    """A context holding NumPy's BLAS to one thread (threadpoolctl's controller, made once)."""
    global _blas
    with _lock:
        if _blas is None:
            from threadpoolctl import ThreadpoolController  # import fran stays fast

            _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def _forget_threads() -> None:  # a forked child has the pool object but none of its threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def _run(fn: Callable, pieces: list) -> list:
    """[fn(*p) for p in pieces], the pieces on parallel threads (the first on this one)."""
    if len(pieces) == 1:
        return [fn(*pieces[0])]
    with _one_blas_thread():
        futures = [_executor(num_threads()).submit(fn, *p) for p in pieces[1:]]
        first = fn(*pieces[0])
        return [first] + [f.result() for f in futures]


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting range(n) into `parts` nearly equal pieces."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def batch_mean(fn: Callable, x: np.ndarray, target: np.ndarray, *, split: bool = True, count=None):
    """fn(x, target) -> (mean value, gradient tree, state), computed piecewise on parallel threads.

    The batch is cut into at most num_threads() pieces of at least MIN_PIECE samples; the value
    and gradients are the means of the pieces' weighted by their counts: count(target piece),
    the terms fn's mean is over (None: the samples; a sequence loss counts the positions it does
    not ignore), so they are the whole batch's up to rounding. If some piece counts nothing, the
    batch is computed in one piece (fn's mean over it would be 0/0). Only networks whose
    layers are all per sample, none random or stateful, are cut (split=True), so the state is the
    first piece's (it is empty); split=False computes the batch whole on this thread (its large products on
    fran's threads: for_pieces), with BLAS held to one thread for any thread count: OpenBLAS's
    own threads change the last bits, and they spin-wait, so that with the other core busy an
    epoch took up to 7x longer than on one thread (benchmarks/README.md)."""
    n = len(x)
    if not split:  # BLAS on one thread even for FRAN_NUM_THREADS=1: its threads change the bits
        with whole_batch_region(), _one_blas_thread():
            return fn(x, target)
    parts = max(1, min(num_threads(), n // MIN_PIECE))
    if parts == 1:
        return fn(x, target)
    cuts = _cuts(n, parts)
    counts = [b - a if count is None else count(target[a:b]) for a, b in cuts]
    if min(counts) == 0:
        return fn(x, target)
    results = _run(fn, [(x[a:b], target[a:b]) for a, b in cuts])
    weights = [c / sum(counts) for c in counts]
    value = sum(w * r[0] for w, r in zip(weights, results, strict=True))

    def weighted(*leaves):
        out = leaves[0] * weights[0]  # a fresh array of ours
        for w, leaf in zip(weights[1:], leaves[1:], strict=True):
            out += leaf * w
        return out

    return value, tree_map(weighted, *[r[1] for r in results]), results[0][2]


@contextlib.contextmanager
def whole_batch_region():
    """While inside, kernels may cut their large products into pieces for fran's threads
    (for_pieces); the pieces depend on shapes only, so results do not depend on the threads."""
    before = getattr(_region, "whole", False)
    _region.whole = True
    try:
        yield
    finally:
        _region.whole = before


def in_whole_batch_region() -> bool:
    return getattr(_region, "whole", False)


def for_pieces(fn: Callable, starts) -> list:
    """[fn(s) for s in starts]: inside a whole-batch region on fran's threads, each taking a
    contiguous run of starts (the calling thread waits), else one after the other here."""
    starts = list(starts)
    threads = min(num_threads(), len(starts))
    if threads < 2 or not in_whole_batch_region():
        return [fn(s) for s in starts]
    runs = [starts[a:b] for a, b in _cuts(len(starts), threads)]
    done = _executor(num_threads()).map(lambda run: [fn(s) for s in run], runs)
    return [result for run in done for result in run]


def map_batches(
    fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, batch_size: int, *, split: bool = True
):
    """np.concatenate of fn over the batches of X, each batch's pieces on parallel threads.

    With split=True fn must act on each row separately (a network whose layers are all declared
    per sample at inference does); at most batch_size rows are in flight at once. split=False
    computes each batch whole on this thread (its large products on fran's threads, BLAS held to
    one thread, as batch_mean(split=False))."""
    if not split:
        with whole_batch_region(), _one_blas_thread():
            return np.concatenate([fn(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])
    threads = num_threads()
    if threads == 1 or len(X) <= 1:
        return np.concatenate([fn(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])
    piece = -(-min(batch_size, len(X)) // threads)  # ceil: one piece per thread
    starts = range(0, len(X), piece)
    with _one_blas_thread():
        outputs = _executor(threads).map(lambda i: fn(X[i : i + piece]), starts)
        return np.concatenate(list(outputs))


__all__ = ["batch_mean", "for_pieces", "map_batches", "num_threads", "whole_batch_region"]
