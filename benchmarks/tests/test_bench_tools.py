"""The benchmark's floating-point counts (benchmarks/flops.py) against hand-computed numbers, and
the torch-free tools around them: the profile's classes, the both-settings summary, the load
warning. No torch: this runs in the `tests` env (which puts benchmarks/ and tests/ on sys.path, as
the benchmark scripts do)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]  # as the benchmark scripts put them

import bench  # noqa: E402
import flops  # noqa: E402
from helpers import fran_models as fm  # noqa: E402

from fran import conv2d, conv2d_transpose, dense, flatten, maxpooling, network, residual  # noqa: E402


@pytest.fixture(autouse=True)
def _sys_path_as_it_was(monkeypatch):
    """fran_models.peer_example puts examples/ on sys.path; take it off after each test: there
    `import fran_avgpool` would find the plugin's folder as an empty namespace package."""
    monkeypatch.setattr(sys, "path", list(sys.path))


# LeNet-5 on 1 x 28 x 28, by hand (MACs per image):
#   conv 5x5, 1 -> 6, out 24 x 24:   24*24 * 6 * 1*5*5  = 86,400   (first layer: no input grad)
#   pool -> 6 x 12 x 12; conv 3x3, 6 -> 16, out 10 x 10: 10*10 * 16 * 6*3*3 = 86,400
#   pool -> 16 x 5 x 5 = 400; dense 400 -> 120: 48,000; 120 -> 84: 10,080; 84 -> 10: 840
LENET5_MACS = [86_400, 86_400, 48_000, 10_080, 840]
LENET5_FORWARD = 2 * sum(LENET5_MACS)  # 463,440
LENET5_TRAIN = 3 * LENET5_FORWARD - 2 * 86_400  # forward + dW + dX, no dX for conv 1


def test_lenet5_products_by_hand():
    found = flops.products(fm.lenet5(), (1, 28, 28))
    assert [p.macs for p in found] == LENET5_MACS
    assert [p.input_grad for p in found] == [False, True, True, True, True]
    assert found[0].out_shape == (6, 24, 24) and found[2].in_shape == (400,)


def test_lenet5_flops_by_hand():
    assert flops.forward_flops(fm.lenet5(), (1, 28, 28)) == LENET5_FORWARD == 463_440
    assert flops.train_flops(fm.lenet5(), (1, 28, 28)) == LENET5_TRAIN == 1_217_520
    # one training epoch of 10,000 images: 12.18 GFLOP
    assert flops.train_flops(fm.lenet5(), (1, 28, 28)) * 10_000 / 1e9 == pytest.approx(12.1752)


def test_conv2d_transpose_counts_each_input_pixel_scattering_a_patch():
    """The autoencoder by hand: conv 16 pad 1 (28x28), conv 8 pad 1 (14x14), two stride-2
    transposes (7 -> 14 -> 28: H*W*C_in*C_out*k*k), conv 1 pad 1 (28x28)."""
    macs = [28 * 28 * 16 * 9, 14 * 14 * 8 * 16 * 9, 7 * 7 * 8 * 8 * 4, 14 * 14 * 8 * 16 * 4]
    macs.append(28 * 28 * 1 * 16 * 9)
    assert [p.macs for p in flops.products(fm.autoencoder(), (1, 28, 28))] == macs
    assert flops.train_flops(fm.autoencoder(), (1, 28, 28)) == 2 * (3 * sum(macs) - macs[0])


def test_residual_blocks_are_walked_into_both_branches():
    net = network(
        [
            conv2d(k=3, channels=4, padding=1),
            residual([conv2d(k=3, channels=8, padding=1)], shortcut=[conv2d(k=1, channels=8)]),
            maxpooling(2),
            flatten(),
            dense(10),
        ]
    )
    found = flops.products(net, (2, 8, 8))
    assert [p.macs for p in found] == [
        8 * 8 * 4 * 2 * 9,  # the stem, first: no input gradient
        8 * 8 * 8 * 4 * 9,  # the block's branch f
        8 * 8 * 8 * 4 * 1,  # its shortcut g (1x1)
        8 * 4 * 4 * 10,  # dense 128 -> 10
    ]
    assert [p.input_grad for p in found] == [False, True, True, True]


def test_a_network_starting_with_a_residual_passes_its_flag_to_both_branches():
    net = network([residual([dense(3)], shortcut=[dense(3)])])
    found = flops.products(net, (5,))
    assert [(p.macs, p.input_grad) for p in found] == [(15, False), (15, False)]
    assert flops.train_flops(net, (5,)) == 2 * (2 * 15 + 2 * 15)


def test_layers_without_products_count_nothing():
    assert flops.products(network([maxpooling(2), flatten()]), (1, 4, 4)) == []
    assert (
        flops.train_flops(conv2d_transpose(k=2, channels=1, stride=2), (1, 3, 3)) == 2 * 2 * 9 * 4
    )


def test_every_benchmarked_network_has_a_count():
    pytest.importorskip("matplotlib")  # the peers' examples need it
    specs = flops.network_specs()
    assert set(specs) == {*fm.ARCHITECTURES, *fm.PEERS}
    assert all(flops.train_flops(s, (1, 28, 28)) > 0 for s in specs.values())
    assert "| lenet5 | 5 | 0.463 | 1.218 | 12.18 |" in flops.table()


# ---------------------------------------------------------------- profile classes


def test_profile_classes_of_typical_functions():
    import profile_kinds as pk

    conv = "/x/fran/layers/_conv.py"
    cases = {
        ("~", 0, "<method 'reshape' of 'numpy.ndarray' objects>"): "copies",
        ("~", 0, "<method 'sum' of 'numpy.ndarray' objects>"): "element-wise",
        ("~", 0, "<method 'reduce' of 'numpy.ufunc' objects>"): "element-wise",
        ("~", 0, "<built-in method numpy.empty>"): "copies",
        ("~", 0, "<built-in method numpy._core._multiarray_umath.c_einsum>"): "products",
        ("~", 0, "<built-in method builtins.isinstance>"): "Python overhead",
        ("/x/fran/layers/_gemm.py", 50, "matmul_wide"): "products",
        ("/x/fran/layers/_gemm.py", 57, "product"): "products",
        ("/x/fran/layers/_winograd.py", 90, "correlate"): "products",
        ("/x/fran/kernels/conv.py", 164, "_correlate"): "products",
        ("/x/fran/kernels/pool.py", 40, "_max_pool_2x2"): "element-wise",
        ("/x/fran/kernels/epilogue.py", 65, "relu_grad_reference"): "element-wise",
        (conv, 125, "im2col"): "copies",
        (conv, 250, "shifted_sum"): "element-wise",
        ("/x/fran/layers/batchnorm.py", 71, "vjp"): "element-wise",
        ("/x/fran/tree.py", 38, "_map"): "Python overhead",
        ("/x/fran/optim.py", 264, "update"): "Python overhead",
        ("/x/site-packages/numpy/lib/_arraypad_impl.py", 546, "pad"): "copies",
        ("/usr/lib/python3.11/threading.py", 1, "wait"): "Python overhead",
    }
    for key, expected in cases.items():
        assert pk.classify(key) == expected, key


def _spin_in_a_thread_of_its_own():
    total = 0
    for i in range(200_000):
        total += i
    return total


def test_the_profile_sees_threads_started_inside_and_leaves_out_their_waits():
    import threading

    import profile_kinds as pk

    def fn():  # as fran's lockstep pieces: the work on threads, the caller waits for them
        threads = [threading.Thread(target=_spin_in_a_thread_of_its_own) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    stats = pk.profile(fn)
    spun = [v for f, v in stats.stats.items() if f[2] == "_spin_in_a_thread_of_its_own"]
    assert len(spun) == 1 and spun[0][1] == 2  # both threads' calls, merged
    assert spun[0][2] > 0.001
    assert not any(f[2] in pk._WAITS for f in stats.stats)
    assert stats.total_tt == pytest.approx(sum(v[2] for v in stats.stats.values()))
    assert threading.getprofile() is None  # the hook is taken down after fn


def test_a_profiled_epoch_is_split_into_the_four_classes(monkeypatch):
    import profile_kinds as pk

    monkeypatch.setenv("FRAN_NUM_THREADS", "1")  # cProfile sees the calling thread only
    from fran.layers.activations import ACTIVATIONS

    rng = np.random.default_rng(0)
    X, y = rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
    model = fm.make_model("lenet5")
    stats = pk.profile(lambda: fm.train_epoch(model, X, y, 32))
    classes = pk.by_class(stats)
    assert list(classes) == list(pk.CLASSES)
    assert classes["products"] > 0 and classes["copies"] > 0
    assert sum(classes.values()) == pytest.approx(stats.total_tt)
    text = pk.markdown("lenet5", stats, 0.1, n_top=5)
    assert "| products |" in text and text.count("\n| `") == 5
    assert ACTIVATIONS["tanh"].f is np.tanh  # the table is restored after the profile


# ---------------------------------------------------------------- both BLAS settings


def _result(ratios: dict, core: str, env: dict) -> dict:
    items = [{"item": k, "ratio": r, "met": r <= 0.8} for k, r in ratios.items()]
    machine = {
        "blas_kernels": [{"internal_api": "openblas", "version": "0.3", "architecture": core,
                          "filepath": "/numpy.libs/libscipy_openblas.so"}],
        "openblas_runtime": {"corename": core},
        "blas_env": env,
    }  # fmt: skip
    return {"items": items, "machine": machine}


def test_the_summary_says_whether_both_settings_meet_the_target():
    import bench_both

    results = {
        "machine": _result({"lenet5_train": 0.75, "fmnist_train": 0.95}, "Haswell",
                           {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}),
        "unset": _result({"lenet5_train": 0.8, "fmnist_train": 0.7}, "SkylakeX",
                         {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}),
    }  # fmt: skip
    table = bench_both.summary_table(results).splitlines()
    assert "Haswell; OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE=512" in table[0]
    assert "SkylakeX; both unset" in table[0]
    assert table[2] == "| LeNet-5 train, 1 epoch | ≤ 0.8 | 0.750 | 0.800 | yes |"
    assert table[3] == "| Fashion-MNIST CNN train, 1 epoch | ≤ 0.8 | 0.950 | 0.700 | **no** |"


def test_options_are_stripped_for_the_children():
    import bench_both

    argv = ["--quick", "--blas-settings", "both", "--out=x.json", "--only", "import"]
    assert bench_both.strip_option(argv, "--blas-settings") == [
        "--quick", "--out=x.json", "--only", "import"
    ]  # fmt: skip
    assert bench_both.option_value(argv, "--out") == "x.json"
    assert bench_both.strip_option(argv, "--out") == [
        "--quick", "--blas-settings", "both", "--only", "import"
    ]  # fmt: skip
    paths = bench_both.paths(Path("/r/results.json"))
    assert paths == {
        "machine": Path("/r/results.machine.json"),
        "unset": Path("/r/results.unset.json"),
    }


# ---------------------------------------------------------------- the load warning


def test_high_load_is_flagged():
    assert not bench.high_load(0.3, 2, 0)
    assert bench.high_load(1.5, 2, 0)  # before the run: other work on the machine
    assert not bench.high_load(2.4, 2, 2)  # during it: its own two threads explain the load
    assert bench.high_load(4.0, 2, 2)


def test_the_load_warning_is_printed_and_recorded(monkeypatch, capsys):
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    results: dict = {}
    bench.check_load(results, "before the run", 0)
    assert "warning: load average 9.00" in capsys.readouterr().err
    assert len(results["warnings"]) == 1
