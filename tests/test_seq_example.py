"""examples/char_lm.py on 300 synthetic words (conftest's small_words): every output, an
interrupted run resumed to the straight run's model bitwise, a refused resume, the encoding and sampling by hand, and the rnn variant."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import attrs
import numpy as np
import pytest

import fran

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = ["--n-embd", "8", "--n-layer", "1", "--n-head", "2", "--batch-size", "32", "--samples", "5"]


@pytest.fixture
def char_lm(small_words, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the script imports _common from its folder
    spec = importlib.util.spec_from_file_location("example_char_lm", EXAMPLES / "char_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encode_and_decode_by_hand(char_lm):
    X, Y = char_lm.encode(["ab", "c"], 4)
    np.testing.assert_array_equal(X, [[0, 1, 2, 0], [0, 3, 0, 0]])
    np.testing.assert_array_equal(Y, [[1, 2, 0, -1], [3, 0, -1, -1]])
    assert char_lm.decode([1, 2, 0, 5]) == "ab" and char_lm.decode([26, 25]) == "zy"


def test_split_is_fixed_and_disjoint(char_lm, small_words):
    words = small_words()
    train, val = char_lm.split_words(words)
    assert len(val) == 30 and sorted(train + val) == sorted(words)
    assert char_lm.split_words(words) == (train, val)


@pytest.mark.parametrize("model", ["transformer", "rnn", "lstm"])
def test_run_writes_every_output_and_learns(char_lm, model, tmp_path, capsys):
    out = tmp_path / model
    metrics = char_lm.main(
        [*TINY, "--model", model, "--epochs", "2", "--lr", "1e-2", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert "epoch 2/2: train loss" in printed and "val loss" in printed and "samples:" in printed
    for name in (
        "learning_curve.png",
        "samples.txt",
        "metrics.json",
        "model.npz",
        "checkpoint.npz",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert [h["epoch"] for h in saved["history"]] == [1, 2]
    assert saved["n_train"] == 270 and saved["n_val"] == 30 and saved["T"] == 12
    first, last = saved["history"][0], saved["history"][-1]
    assert last["val_loss"] < first["val_loss"] < np.log(27) + 0.5
    assert len(saved["samples"]) == 5 and all(
        set(s["word"]) <= set("abcdefghijklmnopqrstuvwxyz") for s in saved["samples"]
    )
    assert {s["in"] for s in saved["samples"]} <= {"train", "val", "new"}
    model_file = fran.load(out / "model.npz")
    assert model_file.epoch == 2 and model_file.step == 2 * 9 and model_file.input_shape == (12,)


def test_resume_from_epoch_one_matches_a_straight_run(char_lm, tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = [*TINY, "--epochs", "2", "--dropout", "0.2", "--quiet"]
    char_lm.main([*common, "--out", str(straight)])
    stop = {"after": 1}
    real = char_lm.train_epoch

    def one_then_interrupt(model, data, args):
        if model.epoch >= stop["after"]:
            raise KeyboardInterrupt
        return real(model, data, args)

    monkeypatch.setattr(char_lm, "train_epoch", one_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        char_lm.main([*common, "--out", str(resumed)])
    monkeypatch.setattr(char_lm, "train_epoch", real)
    assert fran.io.load_checkpoint(resumed)[0].epoch == 1
    char_lm.main([*common, "--out", str(resumed), "--resume"])
    assert fran.load(straight / "model.npz") == fran.load(resumed / "model.npz")
    a = json.loads((straight / "metrics.json").read_text())["history"]
    b = json.loads((resumed / "metrics.json").read_text())["history"]
    assert [h["val_loss"] for h in a] == [h["val_loss"] for h in b]


def test_resume_refuses_another_run(char_lm, tmp_path):
    out = tmp_path / "run"
    char_lm.main([*TINY, "--epochs", "1", "--out", str(out), "--quiet"])
    with pytest.raises(char_lm._common.ResumeError, match=r"another run \(--model transformer\)"):
        char_lm.main([*TINY, "--epochs", "2", "--model", "rnn", "--out", str(out), "--resume"])


def test_sampling_is_seeded_and_temperature_sharpens(char_lm, tmp_path):
    out = tmp_path / "run"
    char_lm.main([*TINY, "--epochs", "1", "--lr", "1e-2", "--out", str(out), "--quiet"])
    model = fran.load(out / "model.npz")
    assert char_lm.sample(model, 6, seed=3) == char_lm.sample(model, 6, seed=3)
    assert char_lm.sample(model, 6, seed=3) != char_lm.sample(model, 6, seed=4)
    cold = char_lm.sample(model, 6, temperature=1e-3, seed=0)
    assert len(set(cold)) == 1  # near-greedy: every sample the same argmax path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--n-words", "1"], "--n-words must be >= 2"),
        (["--temperature", "0"], "--temperature must be a finite number > 0"),
        (["--dropout", "1"], r"--dropout must be in \[0, 1\)"),
        (["--model", "cnn"], "invalid choice"),
    ],
)
def test_bad_arguments_are_argparse_errors(char_lm, argv, message, capsys):
    with pytest.raises(SystemExit):
        char_lm.parse_args(argv)
    assert re.search(message, capsys.readouterr().err)


def test_heads_not_dividing_the_width_is_a_usage_error(char_lm, tmp_path):
    with pytest.raises(char_lm._common.UsageError, match="3 heads must divide the 8 channels"):
        char_lm.main([*TINY, "--n-head", "3", "--out", str(tmp_path), "--quiet"])


def test_n_words_takes_a_fixed_subset_in_list_order(char_lm, small_words):
    args = char_lm.parse_args(["--n-words", "50"])
    data = char_lm.load_data(args)
    words = small_words()
    assert len(data["train"]) + len(data["val"]) == 50
    kept = data["words"]
    assert kept == sorted(kept, key=words.index) and set(kept) <= set(words)
    assert char_lm.load_data(args)["words"] == kept
    with pytest.raises(char_lm._common.UsageError, match="--n-words 301: the list has 300"):
        char_lm.load_data(char_lm.parse_args(["--n-words", "301"]))


def test_train_epoch_is_the_train_step_loop_it_replaced(char_lm, tmp_path):
    """train_epoch (train_nn on integer ids) gives, bitwise, the model and mean loss of the loop
    of train_step over char_lm.batches on float ids that it replaced (the batches the PyTorch
    twin of tests/helpers/char_lm_twins.py is fed)."""
    args = char_lm.parse_args([*TINY, "--epochs", "2", "--dropout", "0.1", "--quiet"])
    data = char_lm.load_data(args)
    model = by_hand = char_lm.fresh_model(args, data["T"])
    X, Y = data["X"].astype(model.dtype), data["Y"]
    for _ in range(2):
        model, mean, _ = char_lm.train_epoch(model, data, args)
        order = char_lm.batches(len(X), args.batch_size, args.seed, by_hand.epoch)
        opt, losses = char_lm.optimizer(args, len(order)), []
        for idx in order:
            by_hand, value = fran.train_step(opt, char_lm.LOSS, by_hand, (X[idx], Y[idx]))
            losses.append(value)
        by_hand = attrs.evolve(by_hand, epoch=by_hand.epoch + 1)
        assert mean == float(np.mean(losses))
    assert model == by_hand and model.step == 18
    valid = data["Yv"] != char_lm.IGNORE
    logits = fran.predict(model, data["Xv"]).astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(valid, data["Yv"], 0)[..., None], -1)[..., 0]
    assert char_lm.evaluate(model, data["Xv"], data["Yv"]) == pytest.approx(
        -picked[valid].mean(), rel=1e-5
    )
