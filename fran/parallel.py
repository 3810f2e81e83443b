"""Using every core: a batch's pieces computed on parallel threads.

NumPy releases the GIL inside its kernels (copies, ufuncs, BLAS), and a layer declared per sample
acts on each sample of a batch separately, so the pieces of a batch can run at once on Python
threads:
- training (`batch_mean`): the batch is cut into a fixed number of pieces (`piece_cuts`:
  FRAN_PIECES, default 2, never the thread or rank count); the threads compute the pieces' mean
  losses and gradients, and the batch's are their means weighted by what each piece's mean is over
  (its samples, or the loss's count: a sequence loss's positions not ignored), added in piece
  order (`combine`: exact; only the rounding differs from one piece). So any FRAN_NUM_THREADS, and any number of ranks (fran.distributed, which
  computes some of the pieces on each rank and gathers them), gives bitwise the same model.
  The default of 2 is this 2-core machine's thread count, so its speed and its bits are what
  they were when fran cut a batch into one piece per thread; on more cores set FRAN_PIECES.
- inference (`map_batches`): each batch of `batch_size` is cut the same way (`inference_cuts`),
  at most one piece a thread in flight.
While fran's threads run, NumPy's BLAS is held to one thread each (threadpoolctl): a
multithreaded OpenBLAS called from two threads at once queues the calls, which measured slower
than one thread. Measured on this 2-core machine, epochs against one thread with a 2-thread
BLAS: Fashion-MNIST CNN 5.79 -> 4.09 s, autoencoder 5.68 -> 4.02 s, LeNet-5 inference
0.26 -> 0.15 s; LeNet-5 training gains only ~7% (a step of 6.5 ms), because its many small NumPy
calls each hand the GIL from one thread to the other. Pieces smaller than half a batch of 64
measured no better for the Fashion-MNIST CNN and worse for LeNet-5.

Cutting a batch is sound only for layers whose outputs for a sample depend on that sample
alone, so a batch is cut only when every layer declares so (fran.registry: per_sample) and, in
training, none is stateful (a random one draws each piece's numbers from the piece's own key,
fran.train.piece_key); any other network computes each batch whole
(split=False); inside that whole-batch region the kernels cut their large products into blocks
that depend on the shapes only, and for_pieces computes the blocks on fran's threads
(fran/layers/_gemm.py), so the results are the same for any thread count.

The thread count is the number of CPUs this process may use, or FRAN_NUM_THREADS if set;
FRAN_NUM_THREADS=1 computes everything on the calling thread. BLAS is held to one thread in
every piece and whole batch for any thread count: a multithreaded OpenBLAS partitions its sums
by its thread count, which would change the bits.
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
PIECES_ENV = "FRAN_PIECES"
DEFAULT_PIECES = 2  # this 2-core machine's thread count: today's speed and today's bits here

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


def num_pieces(pieces: int | None = None) -> int:
    """The pieces a training batch is cut into: `pieces` if given, else FRAN_PIECES if set, else
    DEFAULT_PIECES. It never depends on the thread or rank count, so neither does the model."""
    if pieces is None:
        value = os.environ.get(PIECES_ENV, "").strip()
        if not value:
            return DEFAULT_PIECES
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{PIECES_ENV} must be a positive integer, got {value!r}")
        return int(value)
    if not isinstance(pieces, (int, np.integer)) or isinstance(pieces, bool) or pieces < 1:
        raise ValueError(f"pieces must be a positive integer, got {pieces!r}")
    return int(pieces)


def _run(fn: Callable, pieces: list) -> list:
    """[fn(*p) for p in pieces] in order, contiguous runs of pieces on parallel threads (the
    first run on this one); each piece's result is the same whichever thread computes it."""
    threads = min(num_threads(), len(pieces))
    if threads < 2:
        return [fn(*p) for p in pieces]
    runs = [pieces[a:b] for a, b in _cuts(len(pieces), threads)]
    futures = [_executor(num_threads()).submit(lambda r: [fn(*p) for p in r], r) for r in runs[1:]]
    first = [fn(*p) for p in runs[0]]
    return first + [result for f in futures for result in f.result()]


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting range(n) into `parts` nearly equal pieces."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def piece_cuts(n: int, pieces: int | None = None) -> list[tuple[int, int]]:
    """The [start, stop) rows of each piece of a batch of n: num_pieces(pieces) nearly equal
    pieces, fewer if that would make one smaller than MIN_PIECE samples (n alone decides)."""
    return _cuts(n, max(1, min(num_pieces(pieces), n // MIN_PIECE)))


def rank_share(pieces: int, ranks: int) -> list[tuple[int, int]]:
    """The [first, stop) pieces of each rank: contiguous runs, nearly equal (fran.distributed)."""
    return _cuts(pieces, ranks)


def compute_pieces(fn: Callable, x, target, cuts, first: int = 0, *, keyed: bool = False) -> list:
    """[fn(x[a:b], target[a:b]) for each cut] on fran's threads, BLAS held to one thread (its
    own threads would change the bits). `cuts` are rows of x; keyed=True passes each piece its
    number too, first + its position (a random network draws each piece's numbers from it)."""
    args = [
        (x[a:b], target[a:b], first + i) if keyed else (x[a:b], target[a:b])
        for i, (a, b) in enumerate(cuts)
    ]
    with _one_blas_thread():
        return _run(fn, args)


def combine(results: list, cuts, counts=None) -> tuple:
    """(value, gradients, state) of a batch from its pieces' (mean value, mean gradients,
    state): the means weighted by what each is a mean over (counts: the loss's count of each
    piece, none 0; None: its samples), added in piece order (so bitwise the same for any threads
    or ranks that computed the pieces). The state is the first piece's (it is empty)."""
    if len(results) == 1:
        return results[0]
    sizes = [b - a for a, b in cuts] if counts is None else counts
    weights = [n / sum(sizes) for n in sizes]
    value = sum(w * r[0] for w, r in zip(weights, results, strict=True))

    def weighted(*leaves):
        out = leaves[0] * weights[0]  # a fresh array of ours
        for w, leaf in zip(weights[1:], leaves[1:], strict=True):
            out += leaf * w
        return out

    return value, tree_map(weighted, *[r[1] for r in results]), results[0][2]


def batch_mean(
    fn: Callable, x: np.ndarray, target: np.ndarray, *, split: bool = True, pieces=None,
    keyed: bool = False, count=None,
):  # fmt: skip
    """fn(x, target) -> (mean value, gradient tree, state), computed piecewise on parallel threads.

    The batch is cut into piece_cuts(len(x), pieces): a number of pieces that depends on the
    batch size and `pieces` (FRAN_PIECES) only, never on the threads, so the result is bitwise
    the same for any FRAN_NUM_THREADS; the value and gradients are the means of the pieces'
    weighted by what each is a mean over (count(target piece), the loss's count; None: its
    samples), added in piece order (combine); if some piece counts nothing (its mean would be
    0/0), the batch is computed whole, as for split=False. keyed=True calls fn(x, target,
    piece) (a network with dropout draws each piece's mask from its own key). Only networks
    whose layers are all per sample, none stateful, are cut (split=True), so the state is the
    first piece's (it is empty); split=False computes the batch whole on this thread (its large
    products on fran's threads: for_pieces), with BLAS held to one thread for any thread count:
    OpenBLAS's own threads change the last bits, and they spin-wait, so that with the other core
    busy an epoch took up to 7x longer than on one thread (benchmarks/README.md)."""
    cuts = piece_cuts(len(x), pieces)
    counts = None if count is None else [count(target[a:b]) for a, b in cuts]
    if not split or (counts is not None and 0 in counts):
        # BLAS on one thread even for FRAN_NUM_THREADS=1: its threads change the bits
        with whole_batch_region(), _one_blas_thread():
            return fn(x, target)
    return combine(compute_pieces(fn, x, target, cuts, keyed=keyed), cuts, counts)


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


def inference_cuts(n: int, batch_size: int, *, split: bool = True, pieces=None) -> list:
    """The [start, stop) rows map_batches computes at once: each batch of batch_size whole
    (split=False), or cut into num_pieces(pieces) pieces; thread and rank counts play no part."""
    if not split:
        return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    piece = -(-min(batch_size, n) // num_pieces(pieces))  # ceil
    return [(i, min(i + piece, n)) for i in range(0, n, piece)]


def map_rows(fn: Callable, X: np.ndarray, cuts, *, split: bool = True) -> list:
    """[fn(X[a:b]) for each cut], on fran's threads (split=True: at most one cut per thread in
    flight) or one after the other in a whole-batch region (split=False); BLAS on one thread."""
    if not split:
        with whole_batch_region(), _one_blas_thread():
            return [fn(X[a:b]) for a, b in cuts]
    threads = min(num_threads(), len(cuts))
    with _one_blas_thread():
        if threads < 2:
            return [fn(X[a:b]) for a, b in cuts]
        return list(_executor(threads).map(lambda c: fn(X[c[0] : c[1]]), cuts))


def map_batches(
    fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, batch_size: int, *, split: bool = True,
    pieces=None,
):  # fmt: skip
    """np.concatenate of fn over the batches of X, each batch's pieces on parallel threads.

    With split=True fn must act on each row separately (a network whose layers are all declared
    per sample at inference does); each batch is cut into num_pieces(pieces) pieces
    (inference_cuts), at most one a thread in flight, so at most about batch_size rows when
    there are as many threads as pieces. split=False computes each batch whole on this thread
    (its large products on fran's threads, BLAS held to one thread, as batch_mean(split=False))."""
    cuts = inference_cuts(len(X), batch_size, split=split, pieces=pieces)
    return np.concatenate(map_rows(fn, X, cuts, split=split))


__all__ = [
    "batch_mean",
    "combine",
    "compute_pieces",
    "for_pieces",
    "inference_cuts",
    "map_batches",
    "map_rows",
    "num_pieces",
    "num_threads",
    "piece_cuts",
    "rank_share",
    "whole_batch_region",
]
