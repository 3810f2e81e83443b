"""The README's reproducibility claim, exactly as stated: the same seed, data and thread count on
the same machine give bitwise the same model in separate processes, and since issue 22 so does
another thread count: the batches are cut into a fixed number of pieces (FRAN_PIECES)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers.subprocess_python import run_python

TRAIN = """
    import hashlib, json
    import numpy as np
    import fran
    rng = np.random.default_rng(0)
    X = rng.random((150, 1, 12, 12), dtype=np.float32)
    y = (X[:, 0, :6].mean(axis=(1, 2)) > X[:, 0, 6:].mean(axis=(1, 2))).astype(np.int64)
    net = fran.network([fran.conv2d(k=3, channels=4, activation="tanh"), fran.maxpooling(k=2),
                        fran.flatten(), fran.dense(n_out=2), fran.softmax()], 0, 0)
    model = fran.init_weights(net, 12, 12)
    for epoch in range(2):
        model = fran.train_nn(model, X, y, batch_size=32)
    leaves = [a for p in model.params for k, a in sorted(p.items())]
    print(json.dumps({"digest": hashlib.sha256(b"".join(a.tobytes() for a in leaves)).hexdigest(),
                      "flat": np.concatenate([a.ravel() for a in leaves]).tolist(),
                      "threads": fran.parallel.num_threads()}))
"""


def _train(threads: int) -> dict:
    old = os.environ.get("FRAN_NUM_THREADS")
    os.environ["FRAN_NUM_THREADS"] = str(threads)
    try:
        return run_python(TRAIN)
    finally:
        if old is None:
            del os.environ["FRAN_NUM_THREADS"]
        else:
            os.environ["FRAN_NUM_THREADS"] = old


@pytest.mark.parametrize("threads", [1, 2])
def test_same_machine_same_thread_count_is_bitwise_identical(threads):
    first, second = _train(threads), _train(threads)
    assert first["threads"] == threads
    assert first["digest"] == second["digest"]


def test_another_thread_count_gives_bitwise_the_same_model():
    one, two, three = _train(1), _train(2), _train(3)
    assert one["digest"] == two["digest"] == three["digest"]
    np.testing.assert_array_equal(one["flat"], two["flat"])
