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
fran.train.piece_key), or when the layers that couple the batch do so only through sums over
it (fran.registry: needs_batch; batch norm's statistics). Then the pieces run in lockstep
(`lockstep_pieces`): each piece on a thread of its own, and at each `batch.sum(tree)` every
piece waits until all have given their tree, which are added in piece order (across ranks too:
fran.distributed gathers them), so every piece gets the whole batch's sum, bitwise the same
for any thread or rank count: synchronised batch norm. Each piece's loss gradient is scaled by
its weight in the batch's mean before the pullback (the sums backwards are then the batch
loss's), and the pieces' gradients are added. Any other network computes each batch whole
(split=False); inside that whole-batch region the kernels cut their large products into blocks
that depend on the shapes only, and for_pieces computes the blocks on fran's threads
(fran/layers/_gemm.py), so the results are the same for any thread count.

The thread count is the number of CPUs this process may use, or FRAN_NUM_THREADS if set;
FRAN_NUM_THREADS=1 computes everything on the calling thread, except lockstep pieces, which
run on threads of their own, one computing at a time. BLAS is held to one thread in
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
# per calling thread, a pool with a thread per lockstep piece: two callers' pieces never wait
# for each other's threads (lockstep_pieces)
_lockstep = threading.local()
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


def end_lockstep_threads() -> None:
    """End this thread's lockstep pool: its threads exit, the next lockstep batch starts new ones
    (a profiler that hooks threads at their start needs that)."""
    pool = getattr(_lockstep, "pool", None)
    if pool is not None:
        pool.shutdown(wait=True)
        _lockstep.pool = None


def _forget_threads() -> None:  # a forked child has the pool objects but none of their threads
    global _pool, _lockstep
    _pool, _lockstep = None, threading.local()


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
    weights = piece_weights(cuts, counts)
    value = sum(w * r[0] for w, r in zip(weights, results, strict=True))

    def weighted(*leaves):
        out = leaves[0] * weights[0]  # a fresh array of ours
        for w, leaf in zip(weights[1:], leaves[1:], strict=True):
            out += leaf * w
        return out

    return value, tree_map(weighted, *[r[1] for r in results]), results[0][2]


class PieceAborted(RuntimeError):
    """Raised in a lockstep piece whose batch another piece left with an error (that error is
    the one the caller sees)."""


class Lockstep:
    """The batch of the pieces running in lockstep: `member(i).sum(tree)` (piece i's `batch`)
    waits until every piece has given its tree, then returns their sum in piece order. With
    `gather`, the sum is over gather(trees of these pieces) instead: all ranks' pieces, in
    order (fran.distributed). `gate` holds the pieces computing at once to fran's threads; a
    piece waiting at a sum gives its turn away."""

    def __init__(self, pieces: int, gate: threading.Semaphore, gather: Callable | None = None):
        self._trees: list = [None] * pieces
        self._gather = gather
        self._gate = gate
        self._total = None
        self._error: BaseException | None = None
        self._barrier = threading.Barrier(pieces, action=self._add)

    def _add(self) -> None:  # run by one piece's thread while all wait
        try:
            trees = self._trees if self._gather is None else self._gather(list(self._trees))
            self._total = add_in_order(trees)
        except BaseException as exc:  # every piece raises it, none hangs
            self._error = exc
            raise

    def member(self, i: int) -> _Piece:
        return _Piece(self, i)

    def abort(self) -> None:
        self._barrier.abort()


class _Piece:
    def __init__(self, lockstep: Lockstep, i: int):
        self._lockstep, self._i = lockstep, i

    def sum(self, tree):
        """tree summed over the whole batch: every piece's, in piece order."""
        step = self._lockstep
        step._trees[self._i] = tree
        step._gate.release()
        try:
            step._barrier.wait()
        except threading.BrokenBarrierError:
            if step._error is not None:
                raise step._error from None
            raise PieceAborted("fran.parallel: another piece of this batch failed") from None
        finally:
            step._gate.acquire()
        return step._total

    def __repr__(self) -> str:
        return f"lockstep piece {self._i}"


def add_in_order(trees: list):
    """The sum of trees of one structure, leaf by leaf, in list order (a fresh tree)."""
    if len(trees) == 1:
        return trees[0]

    def add(*leaves):
        out = np.array(leaves[0], copy=True)
        for leaf in leaves[1:]:
            out += leaf
        return out

    return tree_map(add, *trees)


def lockstep_pieces(
    fn: Callable, x, target, cuts, first: int = 0, *, weights, keyed: bool = False,
    gather: Callable | None = None,
):  # fmt: skip
    """[fn(x[a:b], target[a:b], piece, batch, weight) for each cut], the pieces in lockstep.

    Each piece runs on a thread of its own (at most num_threads() computing at once), `batch`
    its member of one Lockstep (so batch.sum is the whole batch's, gather: across ranks), piece
    first + its position, weight = weights[piece] (what its mean loss weighs in the batch's)."""
    from concurrent.futures import ThreadPoolExecutor

    n = len(cuts)
    gate = threading.Semaphore(num_threads())
    step = Lockstep(n, gate, gather)

    def run(i):
        a, b = cuts[i]
        gate.acquire()
        try:
            piece = first + i
            args = (x[a:b], target[a:b], piece if keyed else None, step.member(i), weights[piece])
            return fn(*args)
        except BaseException:
            step.abort()
            raise
        finally:
            gate.release()

    pool = getattr(_lockstep, "pool", None)
    if pool is None or pool._max_workers < n:
        if pool is not None:
            pool.shutdown(wait=False)
        pool = _lockstep.pool = ThreadPoolExecutor(n, thread_name_prefix="fran-lockstep")
    with _one_blas_thread():
        futures = [pool.submit(run, i) for i in range(n)]
        errors = [f.exception() for f in futures]
    real = [e for e in errors if e is not None and not isinstance(e, PieceAborted)]
    failed = real or [e for e in errors if e is not None]
    if failed:
        raise failed[0]
    return [f.result() for f in futures]


def sum_pieces(results: list, cuts, counts=None) -> tuple:
    """(value, gradients, state) of a batch from lockstep pieces' (mean value, gradients of the
    weighted mean, state): the values weighted as in combine, the gradients added in piece
    order; every piece's state is the same (computed from the batch's sums): the first's."""
    weights = piece_weights(cuts, counts)
    value = sum(w * r[0] for w, r in zip(weights, results, strict=True))
    return value, add_in_order([r[1] for r in results]), results[0][2]


def piece_weights(cuts, counts=None) -> list:
    """What each piece's mean weighs in the batch's mean: its samples (or counts) / the total."""
    sizes = [b - a for a, b in cuts] if counts is None else counts
    return [n / sum(sizes) for n in sizes]


def batch_mean(
    fn: Callable, x: np.ndarray, target: np.ndarray, *, split: bool = True, pieces=None,
    keyed: bool = False, count=None, lockstep: bool = False,
):  # fmt: skip
    """fn(x, target) -> (mean value, gradient tree, state), computed piecewise on parallel threads.

    The batch is cut into piece_cuts(len(x), pieces): a number of pieces that depends on the
    batch size and `pieces` (FRAN_PIECES) only, never on the threads, so the result is bitwise
    the same for any FRAN_NUM_THREADS; the value and gradients are the means of the pieces'
    weighted by what each is a mean over (count(target piece), the loss's count; None: its
    samples), added in piece order (combine); if some piece counts nothing (its mean would be
    0/0), the batch is computed whole, as for split=False. lockstep=True (a network summing
    over the batch: batch norm) runs the pieces in lockstep, fn(x, target, piece, batch,
    weight) returning the gradients of weight x its mean (lockstep_pieces, sum_pieces). keyed=True calls fn(x, target,
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
    if lockstep:
        weights = piece_weights(cuts, counts)
        if len(cuts) == 1:  # one piece: here, its products on fran's threads (for_pieces)
            with whole_batch_region(), _one_blas_thread():
                return fn(x, target, 0 if keyed else None, None, 1.0)
        results = lockstep_pieces(fn, x, target, cuts, weights=weights, keyed=keyed)
        return sum_pieces(results, cuts, counts)
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
    "Lockstep",
    "PieceAborted",
    "add_in_order",
    "combine",
    "compute_pieces",
    "for_pieces",
    "inference_cuts",
    "lockstep_pieces",
    "map_batches",
    "map_rows",
    "num_pieces",
    "num_threads",
    "piece_cuts",
    "piece_weights",
    "rank_share",
    "sum_pieces",
    "whole_batch_region",
]
