"""Write tests/data/opt_v1_*.npz with fran at d8f5c82 (optimizer states in format version 1)
and the params that code reaches after one more epoch (opt_v1_*_next.npy). Run as:

    git archive d8f5c82 fran | tar -x -C /tmp/old
    FRAN_NUM_THREADS=1 PYTHONPATH=/tmp/old python tests/data/make_opt_v1.py tests/data
"""

import sys
from pathlib import Path

import numpy as np

import fran
from fran import schedules
from fran.tree import tree_leaves

NET = fran.network(
    [
        fran.conv2d(k=3, channels=2),
        fran.batchnorm(),
        fran.activation("relu"),
        fran.flatten(),
        fran.dense(n_out=3),
        fran.softmax(),
    ]
)
OPTIMIZERS = {
    "sgd": fran.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop": fran.rmsprop(0.01, momentum=0.5),
    "adadelta": fran.adadelta(),
    "clip_adamw": fran.chain(fran.clip_by_global_norm(1.0), fran.adamw(1e-2)),
    "adam_cosine": fran.adam(schedules.cosine(1e-2, 20)),
}


def data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 40)
    return rng.normal(size=(40, 1, 6, 6)).astype(np.float32) + y[:, None, None, None], y


def main(out: Path) -> None:
    X, y = data()
    for name, opt in OPTIMIZERS.items():
        model = fran.train_nn(
            fran.init_weights(NET, 6, 6, seed=5), X, y, optimizer=opt, batch_size=16
        )
        fran.save(out / f"opt_v1_{name}.npz", model)
        more = fran.train_nn(model, X, y, optimizer=opt, batch_size=16)
        np.save(
            out / f"opt_v1_{name}_next.npy",
            np.concatenate([a.ravel() for a in tree_leaves(more.params)]),
        )
        print(name, type(model.opt_state).__name__)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
