"""The example scripts' command line as a user meets it, and the library's counts and folders.

Every argument is checked before any work (the data loaders are spies that fail the test if
called); every failure the scripts can explain is one line `<script>: error: ...` with exit
status 1, the chained traceback only with --verbose; `./run` names its environments.
"""

from __future__ import annotations

import configparser
import dataclasses
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fran
import fran.data
import fran.data.loaders
from fran import dense, network
from fran.layers import _init

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TINY = ["--n-train", "96", "--n-test", "60", "--batch-size", "32", "--quiet"]


def fake_loader(split: str = "train", n: int | None = None, root=None, download: bool = True):
    n = {"train": 60000, "test": 10000}[split] if n is None else n
    rng = np.random.default_rng(0 if split == "train" else 1)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


@pytest.fixture(scope="module")
def lenet5():
    """examples/lenet5_mnist.py as a module (it imports _common from its folder)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLES))
        spec = importlib.util.spec_from_file_location("rel_lenet5", EXAMPLES / "lenet5_mnist.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


@pytest.fixture
def loads(monkeypatch):
    """The calls made to the MNIST loader (synthetic data behind it)."""
    calls = []

    def spy(split="train", n=None, root=None, download=True):
        calls.append(split)
        return fake_loader(split, n)

    monkeypatch.setattr(fran.data, "load_mnist", spy)
    return calls


def script(module, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run the script as from a shell: its cli() with sys.argv; (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lenet5_mnist.py", *argv])
    with pytest.raises(SystemExit) as info:
        module._common.cli(module.main)
        raise SystemExit(0)
    return info.value.code, capsys.readouterr().err


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "--seed must be >= 0 (NumPy's seeds are non-negative), got -1"),
        (["--init", "bogus"], "--init must be one of default, glorot_uniform, "),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--n-train", "0"], "--n-train must be >= 1, got 0"),
        (["--lr", "inf"], "--lr must be a finite number > 0"),
    ],
)
def test_bad_arguments_stop_before_any_work(lenet5, loads, argv, message, monkeypatch, capsys):
    code, err = script(lenet5, [*TINY, *argv], monkeypatch, capsys)
    assert code == 2  # argparse's status and its `usage:` + `prog: error:` lines
    assert err.startswith("usage: lenet5_mnist.py") and f"lenet5_mnist.py: error: {message}" in err
    assert loads == []


def test_init_lists_every_scheme_and_takes_aliases(lenet5, loads, tmp_path, monkeypatch, capsys):
    code, err = script(lenet5, ["--init", "bogus"], monkeypatch, capsys)
    listed = err.split("--init must be one of ")[1].split(";")[0].split(", ")
    assert listed == ["default", *_init.SCHEMES, *_init.ALIASES]
    args = lenet5._common.parse_args(lenet5.EXAMPLE, ["--init", "xavier_uniform", "--out", "x"])
    assert args.init == "xavier_uniform"


def out_cases(tmp_path: Path) -> dict:
    (tmp_path / "file").write_text("precious")
    (tmp_path / "run" / "model.npz").mkdir(parents=True)
    return {
        "an existing file": (tmp_path / "file", "is an existing file; give a folder"),
        "below a file": (tmp_path / "file" / "run", "cannot make the folder, "),
        "a report's name taken by a folder": (tmp_path / "run", "model.npz in it are folders"),
    }


@pytest.mark.parametrize(
    "case", ["an existing file", "below a file", "a report's name taken by a folder"]
)
def test_an_unwritable_out_stops_before_any_work(
    lenet5, loads, case, tmp_path, monkeypatch, capsys
):
    out, message = out_cases(tmp_path)[case]
    code, err = script(lenet5, [*TINY, "--out", str(out)], monkeypatch, capsys)
    assert code == 2 and f"lenet5_mnist.py: error: --out {out}" in err and message in err
    assert loads == []  # not even the data was loaded: nothing trained, nothing lost
    assert (tmp_path / "file").read_text() == "precious"


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys (Linux)")
def test_a_folder_nobody_may_write_in_is_refused(lenet5, loads, monkeypatch, capsys):
    # /sys refuses new files even to root, for whom permission bits do not count
    code, err = script(lenet5, [*TINY, "--out", "/sys/fran-run"], monkeypatch, capsys)
    assert code == 2 and "--out /sys/fran-run: cannot write in /sys (" in err
    assert loads == []


# --------------------------------------------------------------------------- one-line errors


@pytest.fixture
def trained(lenet5, loads, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    lenet5.main([*TINY, "--epochs", "1", "--out", str(out)])
    loads.clear()
    return out


def test_a_corrupt_checkpoint_on_resume_is_one_line(lenet5, trained, monkeypatch, capsys):
    checkpoint = trained / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    argv = [*TINY, "--epochs", "2", "--resume", "--out", str(trained)]
    code, err = script(lenet5, argv, monkeypatch, capsys)
    (line,) = err.splitlines()
    assert code == 1
    assert line.startswith(f"lenet5_mnist.py: error: load_checkpoint: {checkpoint}")

    code, err = script(lenet5, [*argv, "--verbose"], monkeypatch, capsys)
    lines = err.splitlines()
    assert code == 1 and lines[0] == "Traceback (most recent call last):"
    assert "fran.io.CheckpointError: load_checkpoint" in err and lines[-1] == line


def test_a_refused_resume_is_one_line_with_details_on_request(lenet5, trained, monkeypatch, capsys):
    argv = [*TINY, "--epochs", "2", "--resume", "--out", str(trained), "--init", "torch"]
    code, err = script(lenet5, argv, monkeypatch, capsys)
    (line,) = err.splitlines()
    assert code == 1 and line.startswith("lenet5_mnist.py: error: cannot resume from ")
    assert "its network differs" in line and "Use another --out" in line
    assert line.endswith("(--verbose for the details)")
    code, err = script(lenet5, [*argv, "--verbose"], monkeypatch, capsys)
    assert "    checkpoint: [conv2d(" in err  # the two layer lists, in the traceback


def test_resume_of_a_missing_folder_starts_from_scratch(lenet5, loads, tmp_path):
    out = tmp_path / "new"
    metrics = lenet5.main([*TINY, "--epochs", "1", "--resume", "--out", str(out)])
    assert metrics["history"][0]["epoch"] == 1 and (out / "checkpoint.npz").exists()


def test_every_epoch_records_its_memory(lenet5, loads, tmp_path):
    metrics = lenet5.main([*TINY, "--epochs", "2", "--out", str(tmp_path)])
    for entry in metrics["history"]:
        assert 10 < entry["max_rss_mib"] < 100_000
        if sys.platform.startswith("linux"):
            assert 10 < entry["rss_mib"] <= entry["max_rss_mib"] + 1
    first, second = (h["max_rss_mib"] for h in metrics["history"])
    assert second >= first  # a peak so far


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_missing_data_with_no_connection_is_one_line(lenet5, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FRAN_DATA", raising=False)
    monkeypatch.delenv("FRAN_NO_DOWNLOAD", raising=False)
    mnist = fran.data.DATASETS["mnist"]
    dead = dataclasses.replace(mnist, mirrors=(closed_port_url(),), system_dirs=())
    monkeypatch.setitem(fran.data.DATASETS, "mnist", dead)
    monkeypatch.setattr(fran.data, "load_mnist", fran.data.loaders.load_mnist)
    code, err = script(lenet5, [*TINY, "--out", str(tmp_path / "run")], monkeypatch, capsys)
    (line,) = err.splitlines()
    assert code == 1 and line.startswith("lenet5_mnist.py: error: mnist file train-images-idx3")
    assert "no mirror could be downloaded from: run `python -m fran.data fetch mnist`" in line
    assert line.endswith("(--verbose for the details)")
    with pytest.raises(FileNotFoundError) as info:  # the library keeps every detail
        fran.data.loaders.load_mnist("train")
    details = str(info.value)
    assert "train-images-idx3-ubyte.gz: no connection (connection refused)" in details
    assert "urllib3" not in details and "HTTPConnection" not in details


# --------------------------------------------------------------------------- ./run


def test_run_names_the_environments_tox_ini_defines():
    config = configparser.ConfigParser()
    config.read(ROOT / "tox.ini")
    envs = [s.removeprefix("testenv:") for s in config.sections() if s.startswith("testenv:")]
    run = subprocess.run(
        ["sh", str(ROOT / "run"), "tests,lenet", "--", "-x"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == f"run: unknown environment 'lenet'; tox.ini defines: {', '.join(envs)}\n"


# --------------------------------------------------------------------------- the library


def test_training_error_counts_epoch_and_batch_as_printed():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    t = rng.standard_normal((64, 2))
    model = fran.init_weights(network([dense(8, activation="tanh"), dense(2)]), 1, 4)
    model = fran.train_nn(model, X, t, optimizer=fran.sgd(1e-3), batch_size=8)  # epoch 1 fine
    seen = []
    with np.errstate(all="ignore"), pytest.raises(fran.TrainingError) as info:
        fran.train_nn(
            model,
            X,
            t,
            optimizer=fran.sgd(1e20),
            batch_size=8,
            on_batch=lambda i, v: seen.append(i),
        )
    # the second epoch, and the batch after the last one the progress bar counted
    assert (info.value.epoch, info.value.batch) == (2, len(seen) + 1)
    assert f"at epoch 2, batch {len(seen) + 1} of 8 " in str(info.value)
