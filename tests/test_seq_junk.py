"""Junk inputs to the sequence layers, the sequence loss and sequence training: each is refused
with one clear error naming the function (or layer), the argument, what was expected and what
came, before anything is computed or written. Torch-free."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fran

V, T, C = 7, 6, 4
SCE = fran.sequence_cross_entropy(-1)


def _lm(recurrent=None):
    body = [fran.position_embedding(), fran.attention(2)] if recurrent is None else [recurrent]
    return fran.network([fran.embedding(V, C), *body, fran.dense(V)])


@pytest.fixture(scope="module")
def emb():
    spec = fran.embedding(V, C)
    return spec, fran.init(spec, (T,), dtype=np.float64)


@pytest.fixture(scope="module")
def model():
    return fran.init_weights(_lm(), 1, T, dtype=np.float64)


def _ids(n=8, value=None, dtype=np.int64):
    if value is None:
        return np.random.default_rng(0).integers(0, V, (n, T)).astype(dtype)
    return np.full((n, T), value, dtype)


# ------------------------------------------------------------------------- embedding ids

OUT_OF_RANGE = [
    (-1, np.int64, r"token ids must lie in \[0, 7\), got min -1 max -1"),
    (V, np.int64, r"token ids must lie in \[0, 7\), got min 7 max 7"),
    (2**40, np.int64, r"token ids must lie in \[0, 7\), got min 1099511627776"),
    (
        2**63 + 5,
        np.uint64,
        r"token ids must lie in \[0, 7\), got min 9223372036854775813",
    ),  # no wrap-around
    (-1.0, np.float64, r"token ids must lie in \[0, 7\), got min -1 max -1"),
    (
        1e30,
        np.float64,
        r"token ids must lie in \[0, 7\), got min 10000000000000000198846",
    ),  # no wrap either
    (1.5, np.float64, r"token ids must be integers, got 1\.5"),
    (2.01, np.float32, r"token ids must be integers, got 2\.00999"),
    (np.nan, np.float64, r"token ids must be integers, got nan"),
    (-np.inf, np.float64, r"token ids must be integers, got -inf"),
]


@pytest.mark.parametrize(("value", "dtype", "match"), OUT_OF_RANGE)
@pytest.mark.filterwarnings("error")  # no "invalid value encountered in cast" on the way
def test_bad_ids_are_refused_by_the_embedding_naming_itself(emb, value, dtype, match):
    spec, params = emb
    x = _ids(2, value, dtype)
    for call in (
        lambda: fran.apply(spec, params, x),
        lambda: fran.vjp(spec, params, x),
    ):
        with pytest.raises(ValueError, match=r"^embedding\(vocab=7, dim=4\): " + match):
            call()


@pytest.mark.parametrize(("value", "dtype", "match"), OUT_OF_RANGE[:2] + OUT_OF_RANGE[6:7])
def test_bad_ids_are_refused_by_every_training_entry_point(model, value, dtype, match):
    x, y = _ids(8, value, dtype), _ids(8)
    calls = {
        "train_step": lambda: fran.train_step(fran.sgd(0.1), SCE, model, (x, y)),
        "train_nn": lambda: fran.train_nn(model, x, y, loss=SCE),
        "evaluate_nn": lambda: fran.evaluate_nn(model, x, y, loss=SCE),
        "predict": lambda: fran.predict(model, x),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match=r"embedding\(vocab=7, dim=4\): " + match):
            call()


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((2, T), bool), r"float or integer \(token id\) array .* dtype bool"),
        (np.zeros((2, T), complex), r"float or integer \(token id\) array .* complex128"),
        (np.zeros((2, T), object), r"float or integer \(token id\) array .* dtype object"),
        (np.zeros(T, np.int64), r"float or integer \(token id\) array .* shape \(6,\)"),
        ([[0] * T] * 2, r"float or integer \(token id\) array .* got list"),
    ],
)
def test_ids_of_the_wrong_kind_are_refused_by_apply(emb, x, match):
    spec, params = emb
    with pytest.raises(TypeError, match=r"^fran\.apply: x must be a " + match):
        fran.apply(spec, params, x)


def test_ids_of_the_wrong_rank_are_refused_naming_the_layer_and_the_shape(emb, model):
    spec, params = emb
    with pytest.raises(
        ValueError,
        match=r"^fran\.apply: embedding\(vocab=7, dim=4\) cannot take x of shape \(2, 6, 3\) "
        r"\(samples \(6, 3\)\): .* expects a sample of token ids \(T,\), got shape \(6, 3\)",
    ):
        fran.apply(spec, params, np.zeros((2, T, 3), np.int64))
    with pytest.raises(
        ValueError, match=r"^predict: X has samples of shape \(6, 3\) but the model"
    ):
        fran.predict(model, np.zeros((2, T, 3), np.int64))


def test_bool_ids_are_refused_by_predict_train_nn_and_evaluate_nn_as_by_apply(model):
    x, y = np.zeros((8, T), bool), _ids(8)
    for call in (
        lambda: fran.predict(model, x),
        lambda: fran.train_nn(model, x, y, loss=SCE),
        lambda: fran.evaluate_nn(model, x, y, loss=SCE),
    ):
        with pytest.raises(TypeError, match=r"dtype bool"):
            call()


def test_bad_layer_arguments_name_the_layer_the_field_and_the_value():
    cases = [
        (lambda: fran.embedding(0, C), ValueError, r"^embedding: vocab must be an integer >= 1, got 0"),
        (lambda: fran.embedding(V, 2.0), ValueError, r"^embedding: dim must be an integer >= 1, got 2\.0"),
        (lambda: fran.embedding(True, C), ValueError, r"^embedding: vocab must be .* got True"),
        (lambda: fran.attention(0), ValueError, r"^attention: heads must be an integer >= 1, got 0"),
        # fran.validate raises ValueError for every bad value, a wrong type included
        (lambda: fran.attention(2, causal=1), ValueError, r"^attention: causal must be True or False, got 1$"),
        (lambda: fran.attention(2, causal="yes"), ValueError, r"^attention: causal must be .* got 'yes'$"),
        (lambda: fran.attention(2, dropout=1.0), ValueError, r"^attention: dropout must be a number in \[0, 1\), got 1\.0"),
        (lambda: fran.attention(2, dropout=float("nan")), ValueError, r"^attention: dropout .* got nan"),
        (lambda: fran.attention(2, dropout=True), ValueError, r"^attention: dropout .* got True"),
        (lambda: fran.rnn(0), ValueError, r"^rnn: hidden must be an integer >= 1, got 0"),
        (lambda: fran.lstm(-1), ValueError, r"^lstm: hidden must be an integer >= 1, got -1"),
        (lambda: fran.lstm(None), ValueError, r"^lstm: hidden must be an integer >= 1, got None"),
        (lambda: fran.layernorm(eps=0), ValueError, r"^layernorm: eps must be a number > 0, got 0"),
        (lambda: fran.layernorm(eps="1e-5"), ValueError, r"^layernorm: eps must be .* got '1e-5'"),
    ]  # fmt: skip
    for make, kind, match in cases:
        with pytest.raises(kind, match=match):
            make()


# ------------------------------------------------------------------ shapes the layers refuse


@pytest.mark.parametrize(
    ("layer", "shape", "match"),
    [
        (fran.attention(3), (T, C), r"3 heads must divide the 4 channels"),
        (fran.attention(5), (T, C), r"5 heads must divide the 4 channels"),
        (fran.attention(2), (C,), r"expects a sequence sample \(T, C\), got shape \(4,\)"),
        (
            fran.attention(2),
            (T, C, 2),
            r"expects a sequence sample \(T, C\), got shape \(6, 4, 2\)",
        ),
        (fran.position_embedding(), (C,), r"expects a sequence sample \(T, C\), got shape \(4,\)"),
        (fran.rnn(5), (C,), r"expects a sequence sample \(T, C\), got shape \(4,\)"),
        (fran.rnn(5), (T, C, 2), r"expects a sequence sample \(T, C\), got shape \(6, 4, 2\)"),
        (fran.lstm(5), (C,), r"expects a sequence sample \(T, C\), got shape \(4,\)"),
        (fran.lstm(5), (1, T, C), r"expects a sequence sample \(T, C\), got shape \(1, 6, 4\)"),
        (fran.embedding(V, C), (T, C), r"expects a sample of token ids \(T,\), got shape \(6, 4\)"),
    ],
)
def test_a_layer_given_the_wrong_sample_shape_says_what_it_expects(layer, shape, match):
    name = re.escape(repr(layer))
    with pytest.raises(ValueError, match=rf"^fran\.init: {name} cannot take samples .*{match}"):
        fran.init(layer, shape)
    with pytest.raises(ValueError, match=rf"^fran\.init: layer 0 \({name}\) .*{match}|{match}"):
        fran.init(fran.network([layer]), shape)


@pytest.mark.parametrize("layer", [fran.rnn(5), fran.lstm(5), fran.attention(2), fran.layernorm()])
def test_a_sequence_of_the_wrong_rank_or_width_is_refused_at_apply(layer):
    params = fran.init(layer, (T, C), dtype=np.float64)
    name = re.escape(repr(layer))
    with pytest.raises(
        ValueError,
        match=rf"^fran\.apply: params\['\w+'\] of the layer {name} must be shape .* for samples "
        r"of shape \(6, 6\), found shape",
    ):
        fran.apply(layer, params, np.zeros((2, T, C + 2)))  # params made for C channels
    if not isinstance(layer, fran.layernorm):  # layer norm takes any rank
        with pytest.raises(
            ValueError, match=rf"^fran\.apply: {name} cannot take x of shape \(6, 4\)"
        ):
            fran.apply(layer, params, np.zeros((T, C)))  # one sample without its batch axis
        with pytest.raises(
            ValueError, match=r"expects a sequence sample \(T, C\), got shape \(6, 4, 1\)"
        ):
            fran.apply(layer, params, np.zeros((2, T, C, 1)))


def test_a_sequence_longer_or_shorter_than_the_position_embedding_is_refused(model):
    # position_embedding holds one vector per position: its maximum length is the initialised T
    for length in (T + 3, T - 2):
        x = np.zeros((2, length), np.int64)
        with pytest.raises(
            ValueError,
            match=rf"^fran\.apply: params\[1\]\['p'\] of layer 1 \(position_embedding\(\)\) must be "
            rf"shape \({length}, 4\) for samples of shape \({length},\), found shape \(6, 4\)",
        ):
            fran.apply(model.spec, model.params, x)
        with pytest.raises(
            ValueError,
            match=rf"^predict: X has samples of shape \({length},\) but the model was "
            r"initialised for \(6,\)",
        ):
            fran.predict(model, x)
        with pytest.raises(
            ValueError, match=r"^train_step: x must be a non-empty float or integer"
        ):
            fran.train_step(fran.sgd(0.1), SCE, model, (x, np.zeros((2, length), np.int64)))


def test_recurrent_layers_and_attention_without_position_params_take_any_length():
    # not junk: nothing in them depends on T, so another length is computed, not refused
    for layer in (fran.rnn(5), fran.lstm(5), fran.attention(2)):
        params = fran.init(layer, (T, C), dtype=np.float64)
        assert fran.apply(layer, params, np.zeros((2, T + 3, C))).shape[:2] == (2, T + 3)


def test_attention_dropout_in_training_without_randomness_says_to_pass_a_key():
    layer = fran.attention(2, dropout=0.5)
    params = fran.init(layer, (T, C), dtype=np.float64)
    with pytest.raises(ValueError, match=r"in training needs randomness: pass key="):
        fran.vjp(layer, params, np.zeros((2, T, C)), training=True)


# ------------------------------------------------------------------ the sequence loss


@pytest.mark.parametrize(
    ("logits", "target", "kind", "match"),
    [
        ((2, T, V), np.zeros((2, T + 1), np.int64), ValueError, r"expects logits \(N, T, V\) and targets \(N, T\), got \(2, 6, 7\) and \(2, 7\)"),
        ((2, T, V), np.zeros((3, T), np.int64), ValueError, r"got \(2, 6, 7\) and \(3, 6\)"),
        ((2, T, V), np.zeros((2, T, 1), np.int64), ValueError, r"got \(2, 6, 7\) and \(2, 6, 1\)"),
        ((2, V), np.zeros(2, np.int64), ValueError, r"got \(2, 7\) and \(2,\)"),
        ((2, T, V), np.zeros((2, T)), TypeError, r"targets must be integer ids, got dtype float64"),
        ((2, T, V), np.zeros((2, T), bool), TypeError, r"targets must be integer ids, got dtype bool"),
        ((2, T, V), np.full((2, T), V), ValueError, r"targets must lie in \[0, 7\) or be ignore_index=-1, got min 7 max 7"),
        ((2, T, V), np.full((2, T), -2), ValueError, r"lie in \[0, 7\) or be ignore_index=-1, got min -2"),
        ((2, T, V), np.full((2, T), -1), ValueError, r"every target is ignore_index=-1"),
    ],
)  # fmt: skip
def test_the_sequence_loss_refuses_mismatched_or_junk_targets(logits, target, kind, match):
    with pytest.raises(kind, match=r"^sequence_cross_entropy: .*" + match):
        SCE.fn(np.zeros(logits), target)


@pytest.mark.parametrize("ignore", [1.0, True, "-1", [-1]])
def test_the_sequence_loss_refuses_an_ignore_index_that_is_not_an_int(ignore):
    with pytest.raises(
        TypeError, match=r"^sequence_cross_entropy: ignore_index must be an int or None"
    ):
        fran.sequence_cross_entropy(ignore)


def test_sequence_training_refuses_targets_that_do_not_match_naming_the_entry_point(model):
    x = _ids(8)
    calls = {
        "train_nn": lambda y: fran.train_nn(model, x, y, loss=SCE),
        "evaluate_nn": lambda y: fran.evaluate_nn(model, x, y, loss=SCE),
    }
    for name, call in calls.items():
        for y in (
            np.zeros((8, T + 1), np.int64),
            np.zeros(8, np.int64),
            np.zeros((8, T, 1), np.int64),
        ):
            with pytest.raises(
                ValueError,
                match=rf"^{name}: sequence_cross_entropy\(-1\) expects outputs \(T, V\) and targets \(N, T\)",
            ):
                call(y)
        with pytest.raises(ValueError, match=rf"^{name}: y has 7 rows but X has 8 samples$"):
            call(np.zeros((7, T), np.int64))
        with pytest.raises(
            TypeError, match=rf"^{name}: integer targets expected in y, got dtype float64"
        ):
            call(np.zeros((8, T)))
        with pytest.raises(ValueError, match=rf"^{name}: every target in y is ignore_index=-1"):
            call(np.full((8, T), -1))
    with pytest.raises(
        ValueError,
        match=r"^train_nn: cross_entropy expects outputs \(K,\) per sample, the model's are \(6, 7\); for a sequence use fran\.sequence_cross_entropy",
    ):
        fran.train_nn(model, x, x, loss=fran.cross_entropy)
    with pytest.raises(
        ValueError,
        match=r"^train_step: target must be an array with 8 rows like x, got shape \(7, 6\)",
    ):
        fran.train_step(fran.sgd(0.1), SCE, model, (x, np.zeros((7, T), np.int64)))


def test_train_step_on_a_batch_with_every_target_ignored_names_the_loss(model):
    with pytest.raises(ValueError, match=r"^sequence_cross_entropy: every target is ignore_index"):
        fran.train_step(fran.sgd(0.1), SCE, model, (_ids(8), np.full((8, T), -1)))


def test_a_cut_batch_of_a_random_network_with_one_piece_all_ignored_trains(model):
    x, y = _ids(32), _ids(32)
    y[:16] = -1  # two pieces of 16 rows: the first counts no position
    one, v1 = fran.train_step(fran.sgd(0.1), SCE, model, (x, y), pieces=1)
    two, v2 = fran.train_step(fran.sgd(0.1), SCE, model, (x, y), pieces=2)
    assert v2 == v1 and one == two  # computed whole either way


def test_a_batch_or_piece_with_every_target_ignored_is_not_junk_when_others_count():
    """The whole data all ignored is refused (above); a piece all ignored among counted ones
    trains: the batch is computed whole, as uncut."""
    model = fran.init_weights(_lm(fran.lstm(5)), 1, T, dtype=np.float64)  # no randomness
    x, y = _ids(32), _ids(32)
    y[:16] = -1  # the first of two pieces counts no position
    one, v1 = fran.train_step(fran.sgd(0.1), SCE, model, (x, y), pieces=1)
    two, v2 = fran.train_step(fran.sgd(0.1), SCE, model, (x, y), pieces=2)
    assert np.isfinite(v1) and v2 == pytest.approx(v1, rel=1e-12)
    for a, b in zip(
        fran.tree.tree_leaves(one.params), fran.tree.tree_leaves(two.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    trained = fran.train_nn(model, x, y, loss=SCE, batch_size=32, pieces=2, seed=0)
    assert trained.step == model.step + 1
    assert all(np.isfinite(leaf).all() for leaf in fran.tree.tree_leaves(trained.params))


@pytest.mark.parametrize(
    "n, batch_size, smallest",
    [(32, 16, 16), (35, 16, 3), (20, 8, 4)],  # full batches; partial last ones
)
def test_rows_that_could_fill_a_batch_with_ignored_targets_are_refused_before_training(
    model, n, batch_size, smallest
):
    """As many rows with every target ignored as the smallest batch: a shuffle could draw a batch
    of them alone (its mean 0/0, mid-epoch), so train_nn refuses before the first step; one row
    fewer can never fill a batch, and trains."""
    x, y = _ids(n), _ids(n)
    y[:smallest] = -1
    calls = []
    with pytest.raises(
        ValueError,
        match=rf"^train_nn: {smallest} rows of y have every target ignore_index=-1 \(rows 0, 1, "
        rf".*\), as many as the smallest batch \({smallest} of {n} samples at batch_size "
        rf"{batch_size}\), so a shuffled batch could count no position; drop those rows",
    ):
        fran.train_nn(
            model, x, y, loss=SCE, batch_size=batch_size, on_batch=lambda *a: calls.append(a)
        )
    assert calls == []  # refused before any work
    y[0] = x[0]  # one row fewer
    trained = fran.train_nn(model, x, y, loss=SCE, batch_size=batch_size, seed=0)
    assert trained.step == model.step + -(-n // batch_size)
