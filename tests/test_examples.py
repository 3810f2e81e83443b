"""Smoke tests for examples/*.py: tiny runs on synthetic data (no network, no dataset files).

Each script's `main(argv)` is loaded from its file and run for one epoch on a hundred random
images in place of MNIST / Fashion-MNIST (the loaders in fran.data are monkeypatched). The
tests check the printed epoch line, every output file, metrics.json's content, and that --resume
continues a finished run from its checkpoint instead of starting again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import fran
import fran.data
import fran.io
from fran.tree import tree_items

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLASSIFIER_FILES = ["learning_curve.png", "confusion_matrix.png", "misclassified.png"]
SCRIPTS = {
    "lenet5_mnist": CLASSIFIER_FILES,
    "cnn_fmnist": CLASSIFIER_FILES,
    "conv_autoencoder": ["learning_curve.png", "reconstructions.png"],
}
N_TRAIN, N_TEST, BATCH = 96, 60, 32
TINY = ["--n-train", str(N_TRAIN), "--n-test", str(N_TEST), "--batch-size", str(BATCH)]


def fake_loader(split: str = "train", n: int | None = None, root=None, download: bool = True):
    """Random images in [0, 1] and labels 0..9, shaped like the real loaders' output."""
    n = {"train": 60000, "test": 10000}[split] if n is None else n
    rng = np.random.default_rng(0 if split == "train" else 1)
    X = rng.random((n, 1, 28, 28), dtype=np.float32)
    return X, rng.integers(0, 10, n).astype(np.int64)


@pytest.fixture(scope="module")
def examples():
    """name -> the example script's module, with synthetic data behind fran.data's loaders."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fran.data, "load_mnist", fake_loader)
        mp.setattr(fran.data, "load_fashion_mnist", fake_loader)
        mp.syspath_prepend(str(EXAMPLES))  # the scripts `import _common` from their folder
        modules = {}
        for name in SCRIPTS:
            spec = importlib.util.spec_from_file_location(
                f"example_{name}", EXAMPLES / f"{name}.py"
            )
            modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[name])
        yield modules


@pytest.fixture(scope="module")
def one_epoch(examples, tmp_path_factory):
    """name -> (out dir, returned metrics, printed text) of a finished 1-epoch run, run once."""
    runs = {}

    def run(name: str):
        if name not in runs:
            out = tmp_path_factory.mktemp(name)
            printed = io.StringIO()  # capsys is function-scoped; these runs are shared
            with contextlib.redirect_stdout(printed):
                # --resume on an empty folder must start from scratch and say so
                argv = [*TINY, "--epochs", "1", "--out", str(out), "--resume"]
                metrics = examples[name].main(argv)
            runs[name] = (out, metrics, printed.getvalue())
        return runs[name]

    return run


def copy_run(out: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(out, tmp_path / "run"))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_writes_every_output(name, one_epoch):
    out, returned, printed = one_epoch(name)

    assert "no checkpoint" in printed and "epoch 1/1" in printed and "test loss" in printed
    assert f"wrote to {out}" in printed
    for file in [*SCRIPTS[name], "metrics.json", "model.npz", "checkpoint.npz"]:
        assert (out / file).stat().st_size > 0, file
    for png in SCRIPTS[name]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    assert metrics["example"] == name
    assert [h["epoch"] for h in metrics["history"]] == [1]
    assert metrics["n_train"] == N_TRAIN and metrics["n_test"] == N_TEST
    assert metrics["args"]["seed"] == 0 and metrics["args"]["n_train"] == N_TRAIN
    assert np.isfinite(metrics["final"]["test_loss"])
    if SCRIPTS[name] is CLASSIFIER_FILES:
        assert 0.0 <= metrics["final"]["test_accuracy"] <= 1.0
        assert np.sum(metrics["confusion_matrix"]) == N_TEST
    model = fran.load(out / "model.npz")
    assert model.epoch == 1 and model.step == N_TRAIN // BATCH


@pytest.mark.parametrize("name", ["lenet5_mnist", "conv_autoencoder"])
def test_resume_continues_from_the_checkpoint(name, examples, one_epoch, tmp_path, capsys):
    out, first, _ = one_epoch(name)
    out = copy_run(out, tmp_path)

    resumed = examples[name].main([*TINY, "--epochs", "2", "--out", str(out), "--resume"])
    assert "resuming from" in capsys.readouterr().out
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == first["history"][0]  # epoch 1 was not run again
    model, metadata = fran.io.load_checkpoint(out)
    assert model.epoch == 2 and model.step == 2 * N_TRAIN // BATCH
    assert [h["epoch"] for h in metadata["history"]] == [1, 2]
    if name == "lenet5_mnist":  # resuming gives what an uninterrupted run gives
        straight = examples[name].main(
            [*TINY, "--epochs", "2", "--out", str(tmp_path / "straight"), "--quiet"]
        )
        assert capsys.readouterr().out == ""  # --quiet prints nothing

        # bitwise: the same losses and the same parameters, not merely close ones
        def scores(history):  # all but the timings and the memory use
            keep = lambda k: not k.endswith(("_seconds", "_mib"))  # noqa: E731
            return [{k: v for k, v in h.items() if keep(k)} for h in history]

        assert scores(resumed["history"]) == scores(straight["history"])
        assert scores([resumed["final"]]) == scores([straight["final"]])
        a, b = fran.load(out / "model.npz"), fran.load(tmp_path / "straight" / "model.npz")
        assert (a.epoch, a.step) == (b.epoch, b.step)
        for (path, x), (_, y) in zip(tree_items(a.params), tree_items(b.params), strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y), f"params{path} differ"


@pytest.mark.parametrize(
    "change, message",
    [
        (["--seed", "1"], r"--seed 0, not 1"),
        (["--n-train", "64"], rf"--n-train {N_TRAIN}, not 64"),
        (["--init", "torch"], r"network differs"),
    ],
)
def test_resume_refuses_a_checkpoint_from_another_run(
    change, message, examples, one_epoch, tmp_path
):
    out = copy_run(one_epoch("lenet5_mnist")[0], tmp_path)
    argv = [*TINY, "--epochs", "2", "--out", str(out), "--resume", "--quiet", *change]
    with pytest.raises(RuntimeError, match=message):
        examples["lenet5_mnist"].main(argv)
    assert fran.io.load_checkpoint(out)[0].epoch == 1  # the refused run changed nothing


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--n-train", "70000"], "--n-train must be <= 60000"),
        (["--n-test", "10001"], "--n-test must be <= 10000"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_bad_arguments_are_argparse_errors(examples, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        examples["lenet5_mnist"].main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_one_clean_line(examples, tmp_path, monkeypatch, capsys):
    def missing(split="train", n=None, root=None, download=True):
        raise FileNotFoundError("fashion-mnist file x not found. Run `python -m fran.data fetch`")

    monkeypatch.setattr(fran.data, "load_fashion_mnist", missing)
    with pytest.raises(SystemExit) as exit_info:
        examples["cnn_fmnist"]._common.cli(
            lambda argv: examples["cnn_fmnist"].main([*TINY, "--out", str(tmp_path)])
        )
    assert exit_info.value.code == 1  # cli's errors print one line, `<script>: error: ...`
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(": error: fashion-mnist file x not found. Run `python -m fran.data fetch`")


# --------------------------------------------------------------------------- the peer models

PEERS = ["pytorch_mnist", "keras_mnist", "resnet_fmnist"]
# a few hundred images at each example's own batch size (64, 128, 128): 5, 3 and 3 steps an epoch
PEER_TINY = ["--n-train", "320", "--n-test", "100", "--quiet"]


@pytest.fixture(scope="module")
def peers():
    """name -> the peer example's module, on the same synthetic data as `examples`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fran.data, "load_mnist", fake_loader)
        mp.setattr(fran.data, "load_fashion_mnist", fake_loader)
        mp.syspath_prepend(str(EXAMPLES))
        modules = {}
        for name in PEERS:
            spec = importlib.util.spec_from_file_location(f"peer_{name}", EXAMPLES / f"{name}.py")
            modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[name])
        yield modules


@pytest.mark.parametrize("name", PEERS)
def test_peer_example_trains_reports_and_resumes_bitwise(name, peers, tmp_path, monkeypatch):
    """A 2-epoch run interrupted after epoch 1 and resumed ends bitwise as one run straight."""
    main = peers[name].main
    straight = main([*PEER_TINY, "--epochs", "2", "--out", str(tmp_path / "straight")])
    for file in [*CLASSIFIER_FILES, "metrics.json", "model.npz", "checkpoint.npz"]:
        assert (tmp_path / "straight" / file).stat().st_size > 0, file
    assert [h["epoch"] for h in straight["history"]] == [1, 2]
    assert straight["example"] == name and straight["n_test"] == 100

    out = str(tmp_path / "resumed")
    save = fran.io.save_checkpoint

    def save_then_interrupt(*a, **k):  # Ctrl-C right after the first epoch's checkpoint
        save(*a, **k)
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(fran.io, "save_checkpoint", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            main([*PEER_TINY, "--epochs", "2", "--out", out])
    assert fran.io.load_checkpoint(out)[0].epoch == 1
    resumed = main([*PEER_TINY, "--epochs", "2", "--out", out, "--resume"])
    assert resumed["history"][1]["test_loss"] == straight["history"][1]["test_loss"]
    a, b = (
        fran.load(tmp_path / "straight" / "model.npz"),
        fran.load(tmp_path / "resumed" / "model.npz"),
    )
    if name != "keras_mnist":
        assert a.step == b.step == 2 * -(-320 // peers[name].EXAMPLE.batch_size)
    assert a == b  # parameters, running statistics and optimizer state, bitwise
    if name == "keras_mnist":  # validation_split=0.1: the last 32 of 320 are held out
        assert straight["n_train"] == 288 and straight["n_val"] == 32
        assert a.step == 2 * -(-288 // 128)
        assert 0.0 <= straight["final"]["val_accuracy"] <= 1.0
    else:
        assert "val_loss" not in straight["final"]


def test_peer_defaults_follow_their_originals(peers):
    """Each example's command-line defaults are its original's settings."""
    args = {n: peers[n]._common.parse_args(peers[n].EXAMPLE, []) for n in PEERS}
    assert (args["pytorch_mnist"].batch_size, args["pytorch_mnist"].lr) == (64, 1.0)
    assert (args["keras_mnist"].batch_size, args["keras_mnist"].lr) == (128, 1e-3)
    assert peers["keras_mnist"].EXAMPLE.validation_split == 0.1
    opt = peers["pytorch_mnist"].optimizer(args["pytorch_mnist"], 10)
    assert (
        opt.name == "adadelta(lr=step_decay(lr=1.0, step_size=10, gamma=0.7), rho=0.9, eps=1e-06)"
    )
    schedule = peers["resnet_fmnist"].schedule(0.1, epochs=2, steps_per_epoch=10)
    rates = [schedule(t) for t in range(20)]
    assert rates[0] < rates[5] == pytest.approx(0.1) and rates[-1] < 0.01
