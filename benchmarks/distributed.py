"""fran.distributed against threads: R ranks of one thread against one process of R threads.

For LeNet-5 and the Fashion-MNIST CNN (tests/helpers/fran_models.py) on synthetic 28x28 images, one
epoch of --n-train images after a warm-up epoch, each configuration in its own process(es):
- threads: one process, FRAN_NUM_THREADS=R (fran.train_nn);
- ranks:   mpiexec -n R, FRAN_NUM_THREADS=1 each (fran.distributed.train_nn);
both with FRAN_PIECES=R. It reports seconds per step, the seconds per step inside the step's
collective (the allgather, including the wait for the slowest rank) and their share, the
allgather alone on the same bytes after a barrier (the transfer without the wait), and checks
that both configurations end with bitwise the same model.

    python benchmarks/distributed.py --ranks 2 --n-train 10000 --repeats 3   # a quiet machine
    python benchmarks/distributed.py --ranks 2 --n-train 256 --repeats 1     # a check that it runs

Needs the [mpi] extra (mpi4py and the mpich wheel's mpiexec, found at sys.prefix/bin/mpiexec).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NETWORKS = {"lenet5": "lenet5", "fmnist_cnn": "fmnist_cnn", "resnet_fmnist": "resnet_fmnist"}
BATCH = 64


def _data(n: int):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def _digest(model) -> str:
    from fran.tree import tree_leaves

    h = hashlib.sha256()
    for leaf in tree_leaves((model.params, model.opt_state)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


def worker(args) -> None:
    """One configuration, in this process (under mpiexec for --distributed): JSON on stdout."""
    sys.path.insert(0, str(HERE.parent / "tests"))  # the twin networks live with the tests
    from helpers import fran_models

    import fran

    X, y = _data(args.n_train)
    model = (
        fran_models.make_peer_model(args.network)
        if args.network in fran_models.PEERS
        else fran_models.make_model(args.network)
    )
    out = {"network": args.network, "distributed": args.distributed}
    if args.distributed:
        import fran.distributed as dist

        inside = []
        real = dist._gather_known

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                inside.append(time.perf_counter() - t0)

        dist._gather_known = timed
        train, root = dist.train_nn, dist.is_root()
    else:
        inside, train, root = [], fran.train_nn, True
    model = train(model, X[: 4 * BATCH], y[: 4 * BATCH], batch_size=BATCH)  # warm-up
    epochs = []
    for _ in range(args.repeats):
        inside.clear()
        t0 = time.perf_counter()
        model = train(model, X, y, batch_size=BATCH)
        epochs.append((time.perf_counter() - t0, sum(inside)))
    steps = -(-len(X) // BATCH)
    seconds, collective = min(epochs)
    out |= {
        "ranks": dist.size() if args.distributed else 1,
        "threads": fran.parallel.num_threads(),
        "pieces": fran.parallel.num_pieces(),
        "steps": steps,
        "ms_per_step": 1e3 * seconds / steps,
        "ms_collective_per_step": 1e3 * collective / steps,
        "collective_share": collective / seconds if seconds else 0.0,
        "epochs_s": [e[0] for e in epochs],
        "digest": _digest(model),
    }
    if args.distributed:
        out |= _allgather_alone(dist, model)
    if root:
        print(json.dumps(out), flush=True)


def _allgather_alone(dist, model) -> dict:
    """The step's allgather of a whole batch's pieces, timed alone after a barrier."""
    from mpi4py import MPI

    comm = dist._setup(MPI.COMM_WORLD)  # fran's own duplicate, as train_nn uses
    per_piece = 8 + sum(np.asarray(a).nbytes for a in dist.tree_leaves(model.params))
    share = dist.parallel.rank_share(len(dist.parallel.piece_cuts(BATCH)), comm.Get_size())
    counts = [(b - a) * per_piece for a, b in share]
    mine = np.zeros(counts[comm.Get_rank()], dtype=np.uint8)
    times = []
    for _ in range(30):
        comm.Barrier()
        t0 = time.perf_counter()
        dist._gather_known(comm, mine, counts, 60.0, "the benchmark's allgather")
        times.append(time.perf_counter() - t0)
    return {
        "bytes_per_step": int(sum(counts)),
        "ms_allgather_alone": 1e3 * statistics.median(times),
    }


def _run(cmd: list[str], env: dict) -> dict:
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600, check=False)
    if run.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs; the fastest is kept")
    p.add_argument("--networks", default="lenet5,fmnist_cnn")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--network", default="lenet5", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    mpiexec = Path(sys.prefix) / "bin" / "mpiexec"
    root = str(HERE.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    env["FRAN_PIECES"] = str(args.ranks)
    common = ["--worker", "--n-train", str(args.n_train), "--repeats", str(args.repeats)]
    results = []
    for name in args.networks.split(","):
        if name not in NETWORKS:
            raise SystemExit(f"--networks: unknown {name!r}; choose from {sorted(NETWORKS)}")
        base = [sys.executable, __file__, *common, "--network", name]
        threads = _run(base, env | {"FRAN_NUM_THREADS": str(args.ranks)})
        ranks = _run(
            [str(mpiexec), "-n", str(args.ranks), *base, "--distributed"],
            env | {"FRAN_NUM_THREADS": "1"},
        )
        same = threads["digest"] == ranks["digest"]
        results.append({"threads": threads, "ranks": ranks, "bitwise_equal": same})
        print(
            f"{name}: {args.ranks} threads {threads['ms_per_step']:.2f} ms/step; "
            f"{args.ranks} ranks {ranks['ms_per_step']:.2f} ms/step, of which the collective "
            f"{ranks['ms_collective_per_step']:.2f} ms ({100 * ranks['collective_share']:.0f}%; "
            f"the allgather alone {ranks['ms_allgather_alone']:.3f} ms for "
            f"{ranks['bytes_per_step']:,} bytes); same model: {same}",
            flush=True,
        )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
