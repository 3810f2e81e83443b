"""Data-parallel training on many processes and machines, through MPI (mpi4py).

    mpiexec -n 4 python train.py        # train.py calls fran.distributed.train_nn

`train_nn` and `evaluate_nn` take the arguments of fran.train_nn and fran.evaluate_nn and give
their results, bitwise, for any number of ranks and threads:
- a batch is cut into the same pieces as in one process (fran.parallel.piece_cuts: FRAN_PIECES
  or pieces=, never the rank count); rank r computes a contiguous run of them, reading only
  those rows of the batch (every rank draws the same shuffle);
- one collective a step: an allgather of the per-piece (mean loss, flattened gradients), after
  which every rank adds all pieces in piece order (fran.parallel.combine), exactly as one process
  does. MPI_SUM is not used: its order of addition depends on the rank count (MPICH's matched a
  rank-order sum with 2 and 3 ranks, not with 4), so it could not give the same model;
- every rank then takes the same optimizer step, so all hold the same model; at the end of each
  epoch they compare a hash of it (params, state, optimizer state, counters) and stop with
  DistributedError naming the ranks that differ;
- networks that are computed whole (batch norm, a layer not per sample) are not data-parallel:
  every rank computes each whole batch itself (the same model, no speed-up);
- a loss that becomes NaN or inf is seen by every rank at the same step (all hold the same
  combined loss), so every rank raises TrainingError there.
Rank 0 alone should write files and print (`is_root()`); fran.distributed writes nothing.

Threads: unless FRAN_NUM_THREADS is set, each rank takes cpus // (ranks on its host) threads
(MPI's shared-memory split), so ranks on one host do not oversubscribe its cores.

Faults: every collective is non-blocking and polled against a deadline (timeout=, or
FRAN_MPI_TIMEOUT seconds, default 120). A rank that has not contributed by then is dead or hung:
the ranks that are still alive ask each other (point-to-point, a second deadline), name the ranks
that did not answer in a DistributedError's message on stderr, and abort the job (MPI_Abort).
MPICH's mpiexec itself ends the job at once when a rank is killed, naming its PID and host;
under `mpiexec -disable-auto-cleanup` it signals the survivors (SIGUSR1, which fran handles
unless something else does), and they name the dead rank at once, without the deadline.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import threading
import time

import attrs
import numpy as np
from mpi4py import MPI

from fran import engine, parallel
from fran import train as _train
from fran.model import Model
from fran.optim import adam
from fran.tree import tree_leaves

TIMEOUT_ENV = "FRAN_MPI_TIMEOUT"
DEFAULT_TIMEOUT = 120.0  # seconds a rank waits in one collective for the others
_PROBE_TAG = 2207
_set_up: dict = {}  # id(user's comm) -> fran's duplicate of it, on which fran's collectives run
_probes: dict = {}  # id(fran's duplicate) -> another one, for the liveness probe
_failure_notice: list = []  # times MPI's launcher signalled that a process failed


class DistributedError(RuntimeError):
    """The ranks disagree (different models) or one of them is dead or hung."""


def world(comm=None, fn: str = "fran.distributed"):
    """The communicator fran uses: comm, or MPI.COMM_WORLD; anything else is a TypeError."""
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm):
        raise TypeError(
            f"{fn}: comm must be an mpi4py communicator (an MPI.Comm such as MPI.COMM_WORLD), "
            f"got {type(comm).__name__} {comm!r}"
        )
    return comm


def rank(comm=None) -> int:
    return world(comm).Get_rank()


def size(comm=None) -> int:
    return world(comm).Get_size()


def is_root(comm=None) -> bool:
    """Whether this is rank 0, the one that writes checkpoints and metrics and prints."""
    return rank(comm) == 0


def threads_per_rank(comm=None) -> int:
    """This host's CPUs divided among the ranks on this host (at least 1)."""
    local = world(comm).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        on_host = local.Get_size()
    finally:
        local.Free()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // on_host)


def _on_failure_notice(signum, frame) -> None:
    _failure_notice.append(time.monotonic())


def _setup(comm):
    """fran's own duplicate of comm, made once per communicator, whose errors return (a dead
    peer becomes an exception fran names, not MPI's own abort); the thread count, unless
    FRAN_NUM_THREADS is set; and, if nothing else handles it, SIGUSR1: MPICH's mpiexec
    -disable-auto-cleanup sends it to the survivors when a rank dies (its default action would
    end them without a word)."""
    if id(comm) in _set_up:
        return _set_up[id(comm)]
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGUSR1, _on_failure_notice)
    threads = threads_per_rank(comm)  # collective: every rank calls it
    if not os.environ.get(parallel.ENV, "").strip():
        os.environ[parallel.ENV] = str(threads)
    work, probe = comm.Dup(), comm.Dup()  # collective too: they cannot be made once a rank dies
    for c in (work, probe):
        c.Set_errhandler(MPI.ERRORS_RETURN)
    _set_up[id(comm)], _probes[id(work)] = work, probe
    return work


def _timeout(timeout, fn: str = "fran.distributed") -> float:
    if timeout is None:
        value = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            timeout = float(value) if value else DEFAULT_TIMEOUT
        except ValueError:
            raise ValueError(
                f"{fn}: {TIMEOUT_ENV} must be a number of seconds, got {value!r}"
            ) from None
    if not (
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and timeout > 0
        and math.isfinite(timeout)
    ):
        raise ValueError(f"{fn}: timeout must be a positive number, got {timeout!r} (seconds)")
    return float(timeout)


def _wait(comm, post, timeout: float, what: str) -> None:
    """post().Wait() for a non-blocking collective, but past the deadline or on an error from
    MPI: name the ranks that do not answer, and abort."""
    start = time.monotonic()
    pause = 0.0
    request = None
    while True:
        try:
            request = post() if request is None else request
            if request.Test():
                return
        except MPI.Exception as exc:  # a peer's connection broke: it died
            _abort(comm, timeout, what, f"got {exc.Get_error_string().strip()!r} while waiting")
        if _failure_notice:
            _abort(comm, timeout, what, "was told by MPI that a process failed while waiting")
        if time.monotonic() - start > timeout:
            _abort(comm, timeout, what, f"waited {timeout:g} s")
        time.sleep(pause)  # spin at first (a step's collective is short), then back off
        pause = min(1e-3, pause * 2 or 1e-5)


def _silent_ranks(comm, wait: float) -> list[int]:
    """The ranks that do not answer a token within `wait` seconds (the live ones all ask)."""
    me, n = comm.Get_rank(), comm.Get_size()
    probe = _probes[id(comm)]
    token = np.array([me], dtype=np.int64)
    got = {q: np.zeros(1, dtype=np.int64) for q in range(n) if q != me}
    recvs = {q: probe.Irecv(buf, source=q, tag=_PROBE_TAG) for q, buf in got.items()}
    for q in got:
        try:
            probe.Isend(token, dest=q, tag=_PROBE_TAG)
        except MPI.Exception:
            pass
    end = time.monotonic() + wait
    answered = set()
    while time.monotonic() < end and len(answered) < len(recvs):
        for q, req in recvs.items():
            try:
                if q not in answered and req.Test():
                    answered.add(q)
            except MPI.Exception:
                pass
        time.sleep(1e-3)
    return sorted(set(recvs) - answered)


def _abort(comm, timeout: float, what: str, waited: str) -> None:
    me = comm.Get_rank()
    silent = _silent_ranks(comm, min(2.0, timeout))
    who = (
        f"rank(s) {', '.join(map(str, silent))} did not answer: dead or hung"
        if silent
        else "every rank answered, yet the collective did not complete"
    )
    error = DistributedError(
        f"fran.distributed: rank {me} {waited} for {what}; {who}. "
        f"Stopping the job (resume from the last checkpoint, on any number of ranks)."
    )
    print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
    comm.Abort(1)
    raise error  # not reached under MPI_Abort; kept for communicators that return


def allgather_bytes(comm, mine: bytes, timeout: float, what: str) -> list[bytes]:
    """Every rank's bytes, in rank order, on every rank: two non-blocking allgathers (the
    sizes, then the bytes), each against the deadline."""
    n = comm.Get_size()
    sizes = np.zeros(n, dtype=np.int64)
    mine_size = np.array([len(mine)], dtype=np.int64)
    _wait(comm, lambda: comm.Iallgather(mine_size, sizes), timeout, what)
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    send = np.frombuffer(mine, dtype=np.uint8)
    displ = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    _wait(comm, lambda: comm.Iallgatherv(send, [out, (sizes, displ), MPI.BYTE]), timeout, what)
    return [out[a : a + s].tobytes() for a, s in zip(displ, sizes, strict=True)]


def _gather_known(comm, mine: np.ndarray, counts, timeout: float, what: str) -> np.ndarray:
    """Allgatherv of uint8 vectors whose per-rank sizes every rank knows: one collective."""
    counts = np.asarray(counts, dtype=np.int64)
    displ = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = np.empty(int(counts.sum()), dtype=np.uint8)
    _wait(comm, lambda: comm.Iallgatherv(mine, [out, (counts, displ), MPI.BYTE]), timeout, what)
    return out


# ------------------------------------------------------------------ packing a piece's result


def _leaves_like(template, tree) -> list:
    """tree's leaves in template's order (dict keys looked up by name, not by position)."""
    if isinstance(template, dict):
        return [leaf for k in template for leaf in _leaves_like(template[k], tree[k])]
    if isinstance(template, (tuple, list)):
        return [leaf for t, g in zip(template, tree, strict=True) for leaf in _leaves_like(t, g)]
    return [tree]


def _rebuild(template, leaves):
    if isinstance(template, dict):
        return {k: _rebuild(v, leaves) for k, v in template.items()}
    if isinstance(template, (tuple, list)):
        return tuple(_rebuild(v, leaves) for v in template)
    return next(leaves)


def _piece_nbytes(template) -> int:
    return 8 + sum(a.size * a.dtype.itemsize for a in tree_leaves(template))


def _pack(result, template) -> bytes:
    """A piece's (mean loss, gradients) as bytes: the loss as float64, then each gradient leaf in
    its params' dtype (the template's), so nothing is rounded on the way."""
    value, grads, _ = result
    parts = [np.float64(value).tobytes()]
    for want, leaf in zip(tree_leaves(template), _leaves_like(template, grads), strict=True):
        leaf = np.asarray(leaf)
        if leaf.dtype != want.dtype or leaf.shape != want.shape:
            raise DistributedError(
                f"fran.distributed: a gradient of dtype {leaf.dtype} and shape {leaf.shape} "
                f"for params of dtype {want.dtype} and shape {want.shape}"
            )
        parts.append(np.ascontiguousarray(leaf).tobytes())
    return b"".join(parts)


def _unpack(data: bytes, template, state) -> tuple:
    value = float(np.frombuffer(data, dtype=np.float64, count=1)[0])
    leaves, at = [], 8
    for want in tree_leaves(template):
        nbytes = want.size * want.dtype.itemsize
        leaves.append(np.frombuffer(data[at : at + nbytes], dtype=want.dtype).reshape(want.shape))
        at += nbytes
    return value, _rebuild(template, iter(leaves)), state


def _pack_leaves(tree) -> bytes:
    """A batch sum's tree (this piece's) as bytes, leaf by leaf in tree_leaves order."""
    return b"".join(np.ascontiguousarray(leaf).tobytes() for leaf in tree_leaves(tree))


def _unpack_leaves(data: bytes, template):
    """The tree of template's structure, shapes and dtypes that _pack_leaves wrote."""
    leaves, at = [], 0
    for want in tree_leaves(template):
        want = np.asarray(want)
        leaves.append(
            np.frombuffer(data[at : at + want.nbytes], dtype=want.dtype).reshape(want.shape)
        )
        at += want.nbytes
    return _rebuild(template, iter(leaves))


# ------------------------------------------------------------------ training


def model_digest(model: Model) -> bytes:
    """sha256 over the model's params, state, optimizer state and counters."""
    h = hashlib.sha256(f"{model.epoch},{model.step}".encode())
    for leaf in tree_leaves((model.params, model.state, model.opt_state)):
        if leaf is None:  # a fresh model's opt_state: a marker, not an object's bytes
            h.update(b"None")
            continue
        a = np.asarray(leaf)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()


def check_same_model(model: Model, comm=None, *, timeout=None) -> None:
    """Raise DistributedError on every rank unless every rank holds bitwise this model."""
    fn = "fran.distributed.check_same_model"
    _compare(model, _setup(world(comm, fn)), _timeout(timeout, fn))


def _compare(model: Model, comm, timeout: float) -> None:
    digests = allgather_bytes(comm, model_digest(model), timeout, "the model hashes")
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DistributedError(
            f"fran.distributed: after epoch {model.epoch} (step {model.step}) rank(s) "
            f"{', '.join(map(str, differ))} hold a different model from rank 0's; were they "
            f"given other data, another seed or another piece count?"
        )


def _distributed_mean(comm, timeout, X, y, idx, pieces, template, state, model):
    """step_with's mean function for the batch X[idx]: this rank's pieces, all ranks' gathered."""
    me, ranks = comm.Get_rank(), comm.Get_size()
    cuts = parallel.piece_cuts(len(idx), pieces)
    share = parallel.rank_share(len(cuts), ranks)  # a contiguous run of pieces per rank
    first, stop = share[me]
    nbytes = _piece_nbytes(template)

    def mean(fn, split, keyed, count=None, lockstep=False):
        weights = None if count is None else [count(y[idx[a:b]]) for a, b in cuts]
        if not split or (weights is not None and 0 in weights) or (lockstep and len(cuts) == 1):
            # a whole-batch network (or a piece counting nothing, or one lockstep piece):
            # every rank computes it whole, as one process does
            return parallel.batch_mean(
                fn, X[idx], y[idx], split=split, pieces=pieces, keyed=keyed, count=count,
                lockstep=lockstep,
            )  # fmt: skip
        if lockstep:
            return _lockstep_mean(fn, keyed, weights)
        if first < stop:
            a, b = cuts[first][0], cuts[stop - 1][1]
            rows = idx[a:b]  # this rank's rows only
            mine = [(c - a, d - a) for c, d in cuts[first:stop]]
            results = parallel.compute_pieces(fn, X[rows], y[rows], mine, first, keyed=keyed)
            send = np.frombuffer(b"".join(_pack(r, template) for r in results), dtype=np.uint8)
        else:  # more ranks than pieces: this one has none
            send = np.zeros(0, dtype=np.uint8)
        results = _gather_results(send, state)  # a cut network has no state: the old one goes on
        return parallel.combine(results, cuts, weights)

    def _gather_results(send, piece_state):
        counts = [(b - a) * nbytes for a, b in share]
        what = f"the gradients of step {model.step}"
        data = _gather_known(comm, send, counts, timeout, what).tobytes()
        return [
            _unpack(data[i * nbytes : (i + 1) * nbytes], template, piece_state)
            for i in range(len(cuts))
        ]

    def _lockstep_mean(fn, keyed, counts):
        """Synchronised batch norm: this rank's pieces in lockstep with every rank's, each
        batch sum gathered from all pieces and added in piece order (one collective a sum)."""
        shadow = first == stop  # more ranks than pieces: compute piece 0 to join every sum
        run = [0, 1] if shadow else [first, stop]
        a, b = cuts[run[0]][0], cuts[run[1] - 1][1]
        rows = idx[a:b]
        mine = [(c - a, d - a) for c, d in cuts[run[0] : run[1]]]
        sums = [0]

        def gather(trees):
            tree_nbytes = sum(np.asarray(t).nbytes for t in tree_leaves(trees[0]))
            send = b"" if shadow else b"".join(_pack_leaves(t) for t in trees)
            got = _gather_known(
                comm, np.frombuffer(send, dtype=np.uint8),
                [(d - c) * tree_nbytes for c, d in share], timeout,
                f"batch sum {sums[0]} of step {model.step} (synchronised batch norm)",
            ).tobytes()  # fmt: skip
            sums[0] += 1
            return [
                _unpack_leaves(got[i * tree_nbytes : (i + 1) * tree_nbytes], trees[0])
                for i in range(len(cuts))
            ]

        weights = parallel.piece_weights(cuts, counts)
        results = parallel.lockstep_pieces(
            fn, X[rows], y[rows], mine, run[0], weights=weights, keyed=keyed, gather=gather
        )
        mine_bytes = b"" if shadow else b"".join(_pack(r, template) for r in results)
        # every piece's new state is the same (the batch's sums): this rank's first goes on
        everyone = _gather_results(np.frombuffer(mine_bytes, dtype=np.uint8), results[0][2])
        return parallel.sum_pieces(everyone, cuts, counts)

    return mean


def train_nn(
    model: Model,
    X,
    y,
    *,
    optimizer=adam(1e-3),
    batch_size: int = 64,
    loss=None,
    seed: int | None = None,
    on_batch=None,
    pieces: int | None = None,
    comm=None,
    timeout: float | None = None,
) -> Model:
    """fran.train_nn on every rank of `comm` (default MPI.COMM_WORLD): one epoch, the same
    arguments (plus comm and timeout) and bitwise the same model for any number of ranks.

    Every rank passes the same model, X, y and arguments. Raises TrainingError (every rank, the
    same step) if the loss becomes NaN or inf, DistributedError if the ranks end the epoch with
    different models."""
    fn = "fran.distributed.train_nn"
    comm, timeout = world(comm, fn), _timeout(timeout, fn)
    try:
        pieces = parallel.num_pieces(pieces)
    except ValueError as exc:
        raise ValueError(f"{fn}: {exc}") from None
    comm = _setup(comm)  # fran's own duplicate of it
    model, optimizer, loss, X, y = _train.prepare_training(
        fn, model, X, y, optimizer=optimizer, loss=loss, batch_size=batch_size
    )
    seed = model.seed if seed is None else seed
    epoch = model.epoch
    order = np.random.default_rng([seed, epoch]).permutation(len(X))  # as train.minibatches
    body, cut = _train.loss_head(model.spec, loss)
    template = model.params[: len(model.params) - cut]  # the gradients' tree
    state = model.state[: len(model.state) - cut]
    good = model
    for index, start in enumerate(range(0, len(X), batch_size)):
        idx = order[start : start + batch_size]
        mean = _distributed_mean(comm, timeout, X, y, idx, pieces, template, state, model)
        new, value = _train.step_with(optimizer, loss, model, mean)
        if not math.isfinite(value):
            raise _train.TrainingError(
                f"train_nn: the loss became {value} at epoch {epoch}, batch {index} "
                f"(step {model.step}); the last model with a finite loss (step {good.step}) "
                f"is attached as .model",
                good,
            )
        if on_batch is not None:
            on_batch(index, value)
        good, model = model, new
    model = attrs.evolve(model, epoch=epoch + 1)
    _compare(model, comm, timeout)
    return model


def evaluate_nn(
    model: Model, X, y, *, batch_size: int = 500, loss=None, comm=None, timeout=None
) -> dict:
    """fran.evaluate_nn with the rows shared among the ranks: each computes the outputs of its
    own run of pieces (fran.parallel.inference_cuts), one allgather brings them all to every
    rank, and every rank scores them: bitwise the single-process result, on every rank."""
    fn = "fran.distributed.evaluate_nn"
    comm, timeout = world(comm, fn), _timeout(timeout, fn)
    comm = _setup(comm)  # fran's own duplicate of it
    model, loss, X, y, body, forward = _train.prepare_evaluation(
        fn, model, X, y, loss=loss, batch_size=batch_size
    )
    split = not engine.whole_batch_inference(body)
    cuts = parallel.inference_cuts(len(X), batch_size, split=split)
    share = parallel.rank_share(len(cuts), comm.Get_size())
    first, stop = share[comm.Get_rank()]
    sample = engine.output_shape(body, model.input_shape)
    row = math.prod(sample) * model.dtype.itemsize
    mine = parallel.map_rows(forward, X, cuts[first:stop], split=split)
    send = np.ascontiguousarray(
        np.concatenate(mine) if mine else np.zeros((0, *sample)), dtype=model.dtype
    )
    counts = [(cuts[b - 1][1] - cuts[a][0]) * row if b > a else 0 for a, b in share]
    data = _gather_known(comm, send.view(np.uint8).ravel(), counts, timeout, "the outputs")
    out = data.view(model.dtype).reshape((len(X), *sample))
    return _train.scores(model, loss, out, y)


__all__ = [
    "DistributedError",
    "check_same_model",
    "evaluate_nn",
    "is_root",
    "model_digest",
    "rank",
    "size",
    "threads_per_rank",
    "train_nn",
    "world",
]
