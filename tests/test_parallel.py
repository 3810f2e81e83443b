"""fran.parallel (a batch's pieces on threads) and fran.memory (glibc malloc settings)."""

from __future__ import annotations

import contextlib
import os
import platform
import threading

import attrs
import numpy as np
import pytest
from helpers.subprocess_python import run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from fran import (
    adam,
    conv2d,
    cross_entropy,
    dense,
    flatten,
    init_weights,
    maxpooling,
    network,
    predict,
    softmax,
    train_step,
)
from fran import parallel as par
from fran.tree import tree_leaves


def _cnn(dtype=np.float64, seed=0):
    spec = network(
        [
            conv2d(k=3, channels=4, activation="tanh"),
            maxpooling(2),
            flatten(),
            dense(10, activation="tanh"),
            softmax(),
        ]
    )
    return init_weights(spec, 8, 8, seed=seed, dtype=dtype)


@contextlib.contextmanager
def _threads(n):
    """FRAN_NUM_THREADS=n inside the block (hypothesis tests cannot take monkeypatch)."""
    old = os.environ.get(par.ENV)
    os.environ[par.ENV] = str(n)
    try:
        yield
    finally:
        if old is None:
            del os.environ[par.ENV]
        else:
            os.environ[par.ENV] = old


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8)), rng.integers(0, 10, n)


@pytest.mark.parametrize("threads", ["1", "2", "3", "8"])
def test_num_threads_follows_the_environment(monkeypatch, threads):
    monkeypatch.setenv(par.ENV, threads)
    assert par.num_threads() == int(threads)


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv(par.ENV, bad)
    with pytest.raises(ValueError, match=par.ENV):
        par.num_threads()


def test_cuts_cover_the_batch_in_order():
    for n in range(1, 40):
        for parts in range(1, 6):
            cuts = par._cuts(n, parts)
            assert cuts[0][0] == 0 and cuts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(cuts[:-1], cuts[1:], strict=True))
            assert max(b - a for a, b in cuts) - min(b - a for a, b in cuts) <= 1


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 90), threads=st.integers(1, 4))
def test_a_split_step_equals_the_whole_batch_step(n, threads):
    """The weighted mean of the pieces' losses and gradients is the batch's, to rounding."""
    model = _cnn()
    model = attrs.evolve(model, opt_state=adam().init(model.params))
    x, y = _data(n)
    with _threads(1):
        whole, v_whole = train_step(adam(), cross_entropy, model, (x, y))
    with _threads(threads):
        split, v_split = train_step(adam(), cross_entropy, model, (x, y))
    assert v_split == pytest.approx(v_whole, rel=1e-12)
    for a, b in zip(tree_leaves(whole.params), tree_leaves(split.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(tree_leaves(whole.opt_state), tree_leaves(split.opt_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)


def test_batch_mean_really_uses_several_threads(monkeypatch):
    monkeypatch.setenv(par.ENV, "4")
    monkeypatch.setenv(par.PIECES_ENV, "4")  # four pieces, one a thread
    seen = set()
    together = threading.Barrier(4, timeout=30)  # passes only if the 4 pieces run at once

    def fn(x, t):
        seen.add(threading.get_ident())
        together.wait()
        return float(x.mean()), {"g": x.mean(axis=0)}, {}

    x = np.arange(64.0).reshape(64, 1)
    value, grads, _ = par.batch_mean(fn, x, x)
    assert len(seen) == 4
    assert value == pytest.approx(x.mean())
    np.testing.assert_allclose(grads["g"], x.mean(axis=0))


def test_blas_runs_on_one_thread_inside_the_pieces(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv(par.ENV, "2")
    counts = []

    def fn(x, t):
        counts.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return 0.0, {}, {}

    par.batch_mean(fn, np.zeros((64, 1)), np.zeros(64))
    assert counts and set(counts) == {1}


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 70), threads=st.integers(1, 4))
def test_predict_is_the_same_whatever_the_threads_and_batches(n, batch, threads):
    model = _cnn()
    x, _ = _data(n)
    with _threads(1):
        want = predict(model, x, batch_size=n)
    with _threads(threads):
        got = predict(model, x, batch_size=batch)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_map_batches_keeps_the_order_and_the_memory_bound(monkeypatch):
    monkeypatch.setenv(par.ENV, "3")
    monkeypatch.setenv(par.PIECES_ENV, "3")
    sizes = []

    def fn(x):
        sizes.append(len(x))
        return x * 2

    x = np.arange(100.0).reshape(100, 1)
    np.testing.assert_array_equal(par.map_batches(fn, x, 30), x * 2)
    assert max(sizes) * 3 <= 30 + 2  # three pieces of a batch of 30 in flight at most


def test_the_pool_is_rebuilt_in_a_forked_child():
    out = run_python(
        """
        import json, os, sys
        import numpy as np
        os.environ["FRAN_NUM_THREADS"] = "2"
        from fran import parallel
        x = np.arange(8.0).reshape(8, 1)
        parallel.map_batches(lambda a: a + 1, x, 4)  # the parent's pool exists now
        pid = os.fork()
        if pid == 0:
            ok = (parallel.map_batches(lambda a: a + 1, x, 4) == x + 1).all()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}))
        """
    )
    assert out == {"status": 0}


_MALLOC_PROBE = """
    import json, os, resource
    os.environ["FRAN_MALLOC_TUNING"] = "{setting}"
    import fran
    import numpy as np
    if {opt_in}:
        fran.memory.keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def step():  # three 8 MiB temporaries, freed together, as at the end of a training step
        a, b, c = np.ones(1 << 20), np.ones(1 << 20), np.ones(1 << 20)
        del a, b, c
    step()
    before = faults()
    for _ in range(10):
        step()
    print(json.dumps({{"applied": fran.memory.applied, "faults": faults() - before}}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_malloc_settings_keep_freed_arrays_for_the_next_step():
    on = run_python(_MALLOC_PROBE.format(setting="1", opt_in=True))
    off = run_python(_MALLOC_PROBE.format(setting="0", opt_in=True))
    untouched = run_python(_MALLOC_PROBE.format(setting="1", opt_in=False))
    assert on["applied"] is True and off["applied"] is False
    # glibc's defaults hand the 24 MiB back to the kernel each time: ~6,000 faults a step
    assert off["faults"] > 10_000
    assert on["faults"] < 500
    # import fran alone changes no process-wide setting: the host's malloc behaves as before
    assert untouched["applied"] is False and untouched["faults"] > 10_000


def test_training_on_threads_is_bitwise_reproducible():
    from fran import train_nn

    x, y = _data(200)
    with _threads(2):
        runs = [train_nn(_cnn(np.float32), x, y, batch_size=64, seed=3) for _ in range(3)]
    for other in runs[1:]:
        for a, b in zip(tree_leaves(runs[0].params), tree_leaves(other.params), strict=True):
            assert np.array_equal(a, b)


def test_changing_the_thread_count_replaces_the_pool():
    x = np.arange(40.0).reshape(40, 1)
    with _threads(2):
        par.map_batches(lambda a: a, x, 10)
        first = par._pool
    with _threads(3):
        np.testing.assert_array_equal(par.map_batches(lambda a: a + 1, x, 10), x + 1)
        assert par._pool is not first and par._pool._max_workers == 3
    assert first._shutdown


# ------------------------------------------------------------------ pieces, not threads (issue 22)


def _dropout_cnn(dtype=np.float32):
    from fran import dropout

    spec = network(
        [conv2d(k=3, channels=4, activation="relu"), dropout(0.3), flatten(), dense(10), softmax()]
    )
    return init_weights(spec, 8, 8, seed=1, dtype=dtype)


def _bytes(model) -> bytes:
    return b"".join(np.asarray(a).tobytes() for a in tree_leaves((model.params, model.opt_state)))


@pytest.mark.parametrize("net", [_cnn, _dropout_cnn])
def test_the_model_is_bitwise_the_same_for_any_thread_count(net, monkeypatch):
    from fran import train_nn

    x, y = _data(150)
    models = {}
    for threads in ("1", "2", "3", "5"):
        monkeypatch.setenv(par.ENV, threads)
        models[threads] = train_nn(net(np.float32), x, y, batch_size=64, pieces=4)
    assert len({_bytes(m) for m in models.values()}) == 1


def test_the_piece_count_is_what_changes_the_last_bits(monkeypatch):
    from fran import train_nn

    x, y = _data(150)
    monkeypatch.setenv(par.ENV, "2")
    two = train_nn(_cnn(np.float32), x, y, batch_size=64, pieces=2)
    four = train_nn(_cnn(np.float32), x, y, batch_size=64, pieces=4)
    monkeypatch.setenv(par.PIECES_ENV, "4")
    four_env = train_nn(_cnn(np.float32), x, y, batch_size=64)
    assert _bytes(two) != _bytes(four) and _bytes(four) == _bytes(four_env)
    for a, b in zip(tree_leaves(two.params), tree_leaves(four.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_piece_cuts_depend_on_the_batch_and_pieces_only(monkeypatch):
    monkeypatch.setenv(par.ENV, "7")
    assert par.piece_cuts(64, 2) == [(0, 32), (32, 64)]
    assert par.piece_cuts(64, 8) == [(0, 16), (16, 32), (32, 48), (48, 64)]  # MIN_PIECE
    assert par.piece_cuts(20, 4) == [(0, 20)]
    assert par.piece_cuts(100, None) == [(0, 50), (50, 100)]  # DEFAULT_PIECES
    with pytest.raises(ValueError, match="pieces must be a positive integer"):
        par.piece_cuts(64, 0)
    monkeypatch.setenv(par.PIECES_ENV, "x")
    with pytest.raises(ValueError, match="FRAN_PIECES must be a positive integer"):
        par.num_pieces()


def test_combine_adds_the_pieces_in_order_weighted_by_size():
    results = [(1.0, {"g": np.array([1.0])}, {}), (4.0, {"g": np.array([4.0])}, {})]
    value, grads, state = par.combine(results, [(0, 10), (10, 40)])
    assert value == pytest.approx(0.25 * 1 + 0.75 * 4)
    np.testing.assert_allclose(grads["g"], [0.25 * 1 + 0.75 * 4])


def test_each_dropout_piece_draws_from_its_own_key(monkeypatch):
    """A cut dropout batch: piece p's mask is the one drawn from (seed, 1, step, p) alone."""
    from fran import engine
    from fran.train import piece_key

    model = _dropout_cnn(np.float64)
    x, y = _data(64)
    body = network(model.spec.layers[:-1])
    monkeypatch.setenv(par.PIECES_ENV, "2")
    _, value = train_step(adam(1e-3), cross_entropy, model, (x, y))
    want = 0.0
    for p, (a, b) in enumerate(par.piece_cuts(64)):
        rng = engine.as_rng(piece_key(model, p))
        out = engine.layer_apply(body, model.params[:-1], x[a:b], model.state[:-1], rng, True)[0]
        want += (b - a) / 64 * cross_entropy.fn(out, y[a:b])[0]
    assert value == pytest.approx(want, rel=1e-12)


def test_end_lockstep_threads_ends_the_pool_and_the_next_batch_starts_new_threads():
    x, t = np.arange(4.0), np.arange(4)
    cuts = [(0, 2), (2, 4)]

    def names(xs, ts, piece, batch, weight):
        return threading.current_thread().name, float(xs.sum()) * weight

    first = par.lockstep_pieces(names, x, t, cuts, weights=[0.5, 0.5])
    assert [r[1] for r in first] == [0.5, 2.5]
    assert all(n.startswith("fran-lockstep") for n, _ in first)
    alive = {th.name for th in threading.enumerate()}
    assert {n for n, _ in first} <= alive
    par.end_lockstep_threads()
    alive = {th.name for th in threading.enumerate()}
    assert not ({n for n, _ in first} & alive)  # those threads have exited
    again = par.lockstep_pieces(names, x, t, cuts, weights=[0.5, 0.5])
    assert [r[1] for r in again] == [0.5, 2.5]
    par.end_lockstep_threads()
    par.end_lockstep_threads()  # nothing to end: no error
