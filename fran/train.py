"""Training as an explicit fold: `train_nn` is `scan(train_step, model, minibatches)`.

train_step is pure: one batch in, a new Model (params, optimizer state, step counter) and the loss
out. The optimizer state and counters travel inside the Model, so calling train_nn once per epoch
continues Adam's moments; the shuffle of epoch e is drawn from default_rng([seed, e]).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator

import attrs
import numpy as np

from fran import engine, parallel
from fran.layers.softmax import softmax
from fran.losses import Loss, cross_entropy, get_loss, mse
from fran.model import Model
from fran.optim import Optimizer, adam, apply_updates, carry_over, describe, get_optimizer
from fran.tree import freeze


class TrainingError(FloatingPointError):
    """The loss became NaN or inf; `.model` is the last model whose loss was still finite.

    `.epoch` and `.batch` count from 1, as the example scripts print them ("epoch 1/10"): the
    epoch being trained (the model's epoch counter + 1) and the batch within it.
    """

    def __init__(self, message: str, model: Model, epoch: int | None = None, batch=None):
        super().__init__(message)
        self.model = model
        self.epoch = epoch
        self.batch = batch


def _check_model(fn: str, model) -> Model:
    if isinstance(model, Model):  # params and state against the spec: a walk over cached shapes
        engine.check_params(fn, model.spec, model.params, model.input_shape, state=model.state)
        return model
    if isinstance(model, engine.network):
        raise ValueError(
            f"{fn}: the model has no weights yet; call model = init_weights(model, m_in, n_in) first"
        )
    raise TypeError(
        f"{fn}: model must be a fran Model from init_weights, got {type(model).__name__}"
    )


def prepare_inputs(fn: str, model: Model, X) -> np.ndarray:
    """X as (N, *model.input_shape) in the model's dtype; (N, m, n) gains its channel axis.
    Integer X for a model that takes token ids (fran.engine.takes_ids) stays integer."""
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{fn}: X must hold numbers, got dtype {X.dtype}")
    want = model.input_shape
    if X.ndim == 0:
        raise ValueError(f"{fn}: X must be an array of samples (N, ...), got a scalar {X!r}")
    if X.shape[0] == 0:
        raise ValueError(
            f"{fn}: X is empty (shape {X.shape}); expected (N, {', '.join(map(str, want))})"
        )
    sample = X.shape[1:]
    if sample != want:
        image_without_channel = len(want) == 3 and want[0] == 1 and sample == want[1:]
        flat = len(want) == 1 and math.prod(sample) == want[0] and len(sample) > 1
        if not (image_without_channel or flat):
            raise ValueError(
                f"{fn}: X has samples of shape {sample} but the model was initialised for "
                f"{want} (X shape {X.shape})"
            )
        X = X.reshape((X.shape[0], *want))
    if engine.takes_ids(model.spec):
        if X.dtype.kind == "b":  # as fran.apply: True/False are not token ids
            raise TypeError(f"{fn}: X holds token ids for {model.spec.layers[0]!r}; got dtype bool")
        if X.dtype.kind in "iu":
            return X  # token ids: the embedding checks their range
    X = X.astype(model.dtype, copy=False)
    if not np.isfinite(X).all():
        bad = int(np.count_nonzero(~np.isfinite(X)))
        raise ValueError(f"{fn}: X contains {bad} non-finite values (NaN or inf)")
    return X


def _default_loss(fn: str, model: Model, loss) -> Loss:
    if loss is None:
        return cross_entropy if isinstance(model.spec.layers[-1], softmax) else mse
    try:
        return get_loss(loss)
    except ValueError as exc:
        raise ValueError(f"{fn}: {exc}") from None


def _output_shape(model: Model) -> tuple:
    return engine.output_shape(model.spec, model.input_shape)


def prepare_targets(fn: str, model: Model, loss: Loss, y, n: int) -> np.ndarray:
    """Validate targets: int labels (N,) or one-hot (N, K) for cross_entropy; int labels (N, T)
    for a per-position loss on outputs (T, V); outputs' shape for mse."""
    y = np.asarray(y)
    out = _output_shape(model)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"{fn}: y has {y.shape[0] if y.ndim else 0} rows but X has {n} samples")
    if loss.per_position:
        return _position_targets(fn, loss, y, out)
    if loss.on_logits:
        if len(out) != 1:
            raise ValueError(
                f"{fn}: {loss.name} expects outputs (K,) per sample, the model's are {out}; "
                f"for a sequence use fran.sequence_cross_entropy"
            )
        (k,) = out
        if y.ndim == 1:
            if y.dtype.kind not in "iu":
                raise TypeError(f"{fn}: integer class labels expected in y, got dtype {y.dtype}")
            if y.min() < 0 or y.max() >= k:
                raise ValueError(
                    f"{fn}: labels must lie in [0, {k}) for {k} outputs, got min {y.min()} max {y.max()}"
                )
            return y.astype(np.intp, copy=False)
        if y.shape[1:] != (k,):
            raise ValueError(f"{fn}: one-hot y must have shape ({n}, {k}), got {y.shape}")
    else:
        if y.shape[1:] != out:
            if math.prod(y.shape[1:]) != math.prod(out):
                raise ValueError(f"{fn}: y has samples of shape {y.shape[1:]}, outputs are {out}")
            y = y.reshape((n, *out))
    y = y.astype(model.dtype, copy=False)
    if not np.isfinite(y).all():
        raise ValueError(f"{fn}: y contains non-finite values")
    return y


def _position_targets(fn: str, loss: Loss, y: np.ndarray, out: tuple) -> np.ndarray:
    """Integer targets (N, T) for outputs (T, V): each in [0, V) or the loss's ignore_index."""
    if len(out) != 2 or y.shape[1:] != out[:1]:
        raise ValueError(
            f"{fn}: {loss.name} expects outputs (T, V) and targets (N, T); the model's outputs "
            f"are {out} and y has shape {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: integer targets expected in y, got dtype {y.dtype}")
    counted = y if loss.ignore_index is None else y[y != loss.ignore_index]
    if counted.size == 0:
        raise ValueError(f"{fn}: every target in y is ignore_index={loss.ignore_index}")
    if counted.min() < 0 or counted.max() >= out[1]:
        raise ValueError(
            f"{fn}: targets must lie in [0, {out[1]}) for {out[1]} outputs"
            + ("" if loss.ignore_index is None else f" or be ignore_index={loss.ignore_index}")
            + f", got min {counted.min()} max {counted.max()}"
        )
    return y.astype(np.intp, copy=False)


def _check_batch_size(fn: str, batch_size, n: int) -> None:
    if (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(f"{fn}: batch_size must be an integer >= 1, got {batch_size!r}")


def _check_every_batch_counts(fn: str, loss: Loss, y: np.ndarray, batch_size: int) -> None:
    """Refuse, before the first step, data where a shuffled batch could be drawn only from rows
    whose every target is ignore_index: its mean loss would be 0/0, mid-epoch. Fewer such rows
    than the smallest batch (the last, partial one, or batch_size) can never fill a batch."""
    if not loss.per_position or loss.ignore_index is None:
        return
    empty = np.flatnonzero((y == loss.ignore_index).all(axis=1))
    n = len(y)
    smallest = n % batch_size or min(batch_size, n)
    if len(empty) >= smallest:
        rows = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        raise ValueError(
            f"{fn}: {len(empty)} rows of y have every target ignore_index={loss.ignore_index} "
            f"(rows {rows}), as many as the smallest batch ({smallest} of {n} samples at "
            f"batch_size {batch_size}), so a shuffled batch could count no position; drop those "
            "rows, which count for nothing, or choose another batch_size"
        )


@functools.lru_cache(maxsize=64)
def loss_head(spec: engine.network, loss: Loss) -> tuple[engine.network, int]:
    """(the network the loss sees, how many final layers it leaves out): the one place that
    decides to fuse a final softmax into a loss on logits (cross_entropy trains on the logits)."""
    if loss.on_logits and isinstance(spec.layers[-1], softmax):
        return engine.network(spec.layers[:-1]), 1
    return spec, 0


def training_key(model: Model) -> tuple:
    """The key of this step's randomness: (seed, 1, step) (the shuffle uses [seed, epoch])."""
    return (model.seed, 1, model.step)


def piece_key(model: Model, piece: int) -> tuple:
    """The key of one piece's randomness in a cut batch: (seed, 1, step, piece)."""
    return (*training_key(model), piece)


def _head(tree: tuple, cut: int) -> tuple:
    return tree[: len(tree) - cut]


def _check_step(fn, optimizer, loss, model, batch):
    """train_step's arguments, checked at a cost of a few microseconds (shapes, label range)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"{fn}: optimizer must be a fran Optimizer such as adam(1e-3), got {optimizer!r}"
        )
    if not isinstance(loss, Loss):
        raise TypeError(f"{fn}: loss must be a fran Loss such as cross_entropy, got {loss!r}")
    model = _check_model(fn, model)
    if not (isinstance(batch, tuple) and len(batch) == 2):
        raise TypeError(f"{fn}: batch must be a pair (x, target), got {type(batch).__name__}")
    x, target = batch
    want = model.input_shape
    kinds = engine.input_kinds(model.spec)  # floats, or also integers for a model taking ids
    if (
        not isinstance(x, np.ndarray)
        or x.shape[1:] != want
        or x.dtype.kind not in kinds
        or not len(x)
    ):
        got = (
            f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        )
        what = "float or integer (token id)" if kinds != "f" else "float"
        raise ValueError(
            f"{fn}: x must be a non-empty {what} array of shape (B, {', '.join(map(str, want))}), "
            f"got a {got}"
        )
    if x.dtype.kind == "f":  # computed in the model's dtype, as train_nn does; ids stay ints
        x = x.astype(model.dtype, copy=False)
    if not isinstance(target, np.ndarray) or len(target) != len(x):
        got = f"shape {target.shape}" if isinstance(target, np.ndarray) else type(target).__name__
        raise ValueError(f"{fn}: target must be an array with {len(x)} rows like x, got {got}")
    if loss.on_logits and not loss.per_position and target.ndim == 1:
        k = _output_shape(model)[-1]
        if target.dtype.kind not in "iu" or target.min() < 0 or target.max() >= k:
            raise ValueError(
                f"{fn}: integer labels in [0, {k}) expected in target, got dtype {target.dtype}, "
                f"min {target.min()}, max {target.max()}"
            )
    return x, target


def train_step(
    optimizer: Optimizer, loss: Loss, model: Model, batch, *, pieces: int | None = None
) -> tuple[Model, float]:
    """One optimizer step on one batch, in training mode: (model, (x, target)) -> (new model, loss).

    Args:
        optimizer: an Optimizer such as adam(1e-3); a model without optimizer state (fresh from
            init_weights) starts from optimizer.init.
        loss: a Loss; cross_entropy fuses with a final softmax (trained on the logits).
        model: a Model.
        batch: (x, target) with x shaped (B, *model.input_shape): floats, or integer token ids
            for a model whose first layer takes them (embedding), passed on uncast.
        pieces: the pieces the batch is cut into (None: FRAN_PIECES, else 2; fran.parallel).
    Returns:
        The model after the step (params, layer state, optimizer state, step + 1) and the
        batch's mean loss.
    """
    x, target = _check_step("train_step", optimizer, loss, model, batch)
    pieces = parallel.num_pieces(pieces)
    return step_with(optimizer, loss, model, _local_mean(x, target, pieces))


def _local_mean(x, target, pieces):
    """batch_mean over this process's threads, as step_with wants it."""
    return lambda fn, split, keyed, count=None, lockstep=False: parallel.batch_mean(
        fn, x, target, split=split, pieces=pieces, keyed=keyed, count=count, lockstep=lockstep
    )


def step_with(optimizer: Optimizer, loss: Loss, model: Model, mean) -> tuple[Model, float]:
    """train_step's update, the batch's mean loss and gradients from mean(fn, split, keyed, count,
    lockstep) (fran.parallel.batch_mean on this process's rows, or fran.distributed's across
    ranks)."""
    body, cut = loss_head(model.spec, loss)
    params, state = _head(model.params, cut), _head(model.state, cut)
    split = not engine.whole_batch(body)
    keyed = split and engine.random(body)  # each piece draws from its own key
    # the step's key: for a batch computed whole (also a cut one whose piece counts nothing)
    key = training_key(model) if engine.random(body) else None
    lockstep = split and engine.sums_batch(body)  # batch norm: pieces share the batch's sums

    def loss_and_grads(x, target, piece=None, batch=None, weight=1.0):
        # the layer-level call: the batch was checked, so no second check per piece
        rng = engine.as_rng(piece_key(model, piece) if keyed and piece is not None else key)
        y, pullback, new_state = engine.layer_vjp(body, params, x, state, rng, True, batch)
        value, dy = loss.fn(y, target)
        # a lockstep piece pulls back its weight in the batch's mean loss: the batch sums
        # backwards are then the batch loss's, and the pieces' gradients add up
        grads, _ = pullback(dy if weight == 1.0 else dy * weight, input_grad=False)
        return value, grads, new_state

    # the batch's mean loss and gradients: in a fixed number of pieces (on parallel threads)
    # if every layer is declared per sample and none is stateful, or the layers coupling the
    # batch do it by batch sums (in lockstep), else whole; the pieces' means are weighted by
    # what each is a mean over (loss.count: samples, or counted positions)
    value, grads, new_state = mean(loss_and_grads, split, keyed, loss.count, lockstep)
    opt_state = optimizer.init(model.params) if model.opt_state is None else model.opt_state
    updates, opt_state = optimizer.update((*grads, *({},) * cut), opt_state, model.params)
    return attrs.evolve(
        model,
        params=apply_updates(model.params, updates),
        state=freeze((*new_state, *model.state[len(model.state) - cut :])),
        opt_state=opt_state,
        step=model.step + 1,
    ), value


def scan(step: Callable, carry, xs):
    """lax.scan in a few lines: fold `step(carry, x) -> (carry, y)` over xs, collecting the ys."""
    ys = []
    for x in xs:
        carry, y = step(carry, x)
        ys.append(y)
    return carry, ys


def minibatches(X, y, batch_size: int, rng: np.random.Generator) -> Iterator[tuple]:
    """Shuffled (x, y) batches; the last one may be smaller (as torch's drop_last=False)."""
    order = rng.permutation(len(X))
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        yield X[idx], y[idx]


class OptimizerStateWarning(UserWarning):
    """train_nn met a model whose optimizer state does not fit the optimizer it was given, and
    started that optimizer from a fresh state (the message names both)."""


def _opt_state_for(optimizer: Optimizer, model: Model):
    """The model's optimizer state continued under `optimizer` (see fran.optim.carry_over), or
    a fresh one: silently when the model has none, with an OptimizerStateWarning otherwise."""
    fresh = optimizer.init(model.params)
    if model.opt_state is None:
        return fresh
    state = carry_over(model.opt_state, fresh)
    if state is None:
        warnings.warn(
            f"train_nn: the model's optimizer state (from {describe(model.opt_state)}) does not "
            f"fit {optimizer.name} (whose state is {describe(fresh)}), so {optimizer.name} starts "
            f"from a fresh state; to start afresh without this warning, train "
            f"attrs.evolve(model, opt_state=None)",
            OptimizerStateWarning,
            stacklevel=4,  # the caller of train_nn (through prepare_training)
        )
        return fresh
    return state


def train_nn(
    model: Model,
    X,
    y,
    *,
    optimizer: Optimizer = adam(1e-3),
    batch_size: int = 64,
    loss=None,
    seed: int | None = None,
    on_batch: Callable | None = None,
    pieces: int | None = None,
) -> Model:
    """Train for one epoch: a fold of train_step over shuffled mini-batches.

    Args:
        model: an initialised Model (from init_weights or a previous train_nn).
        X: inputs (N, m, n) or (N, channels, m, n) (or (N, features) for an MLP).
        y: integer labels (N,) or one-hot (N, K) for classifiers; target outputs for mse
            (for an autoencoder, the images themselves); integer targets (N, T) for a
            per-position loss such as sequence_cross_entropy (X then integer ids (N, T)).
        optimizer: an Optimizer (sgd, adam, adamw, rmsprop, adadelta, or a chain such as
            chain(clip_by_global_norm(1.0), adam(1e-3))) or one of the names "sgd" (lr 0.01),
            "adam", "adamw", "rmsprop", "adadelta" (their defaults); its state travels inside
            the model across epochs. A state another optimizer left continues when it fits
            (fran.optim.carry_over: adam's under adamw, or under a chain with clipping added);
            otherwise the optimizer starts afresh with an OptimizerStateWarning.
        batch_size: samples per step; a batch larger than the data is the whole data.
        loss: None (cross_entropy after a final softmax, else mse), a Loss or its name.
        seed: the shuffle seed; None uses the model's seed. Epoch e shuffles with [seed, e].
        on_batch: called as on_batch(batch_index, loss_value) after each step (progress bars).
        pieces: each batch is cut into this many pieces (None: FRAN_PIECES, else 2), their
            gradients added in piece order: the model depends on it, never on the thread count.
    Returns:
        The new model, its epoch counter advanced by one.
    Raises:
        TrainingError: the loss became NaN or inf; it names the epoch and batch and carries
            the last good model as `.model`.
    """
    fn = "train_nn"
    model, optimizer, loss, X, y = prepare_training(
        fn, model, X, y, optimizer=optimizer, loss=loss, batch_size=batch_size
    )
    seed = model.seed if seed is None else seed
    epoch = model.epoch
    rng = np.random.default_rng([seed, epoch])
    step = functools.partial(train_step, optimizer, loss, pieces=parallel.num_pieces(pieces))

    def checked_step(carry, batch):
        # `good` is the last model whose loss was finite; `current`'s loss is measured now
        index, good, current = carry
        new, value = step(current, batch)
        if not math.isfinite(value):
            # counted from 1, as the scripts print them (model.epoch counts finished epochs)
            raise TrainingError(
                f"train_nn: the loss became {value} at epoch {epoch + 1}, batch {index + 1} of "
                f"{n_batches} (step {current.step}); the last model with a finite loss "
                f"(step {good.step}) is attached as .model",
                good,
                epoch=epoch + 1,
                batch=index + 1,
            )
        if on_batch is not None:
            on_batch(index, value)
        return (index + 1, current, new), value

    n_batches = -(-len(X) // batch_size)
    batches = minibatches(X, y, batch_size, rng)
    (_, _, model), _ = scan(checked_step, (0, model, model), batches)
    return attrs.evolve(model, epoch=epoch + 1)


def _infer(spec, params, state):
    """x -> the outputs in inference mode (running statistics, no dropout)."""
    return lambda x: engine.layer_apply(spec, params, x, state, None, False)[0]  # x checked


def predict(model: Model, X, *, batch_size: int = 500) -> np.ndarray:
    """The network's outputs for X in inference mode, computed in batches (each split across
    threads: fran.parallel)."""
    model = _check_model("predict", model)
    X = prepare_inputs("predict", model, X)
    _check_batch_size("predict", batch_size, len(X))
    forward = _infer(model.spec, model.params, model.state)
    return parallel.map_batches(
        forward, X, batch_size, split=not engine.whole_batch_inference(model.spec)
    )


def evaluate_nn(model: Model, X, y, *, batch_size: int = 500, loss=None) -> dict:
    """Mean loss over (X, y) and, for classifiers, accuracy as a fraction in [0, 1].

    Args:
        model: an initialised Model.
        X, y: as for train_nn.
        batch_size: samples per forward pass (memory only; results do not depend on it).
        loss: as for train_nn.
    Returns:
        {"loss": float, "accuracy": float (classifiers only), "n": number of samples}; for a
        per-position loss (sequence_cross_entropy) the loss is its mean over every counted
        position of (X, y), the accuracy the fraction of counted positions whose argmax is the
        target, and "positions" the number of counted positions.
    """
    model, loss, X, y, body, forward = prepare_evaluation(
        "evaluate_nn", model, X, y, loss=loss, batch_size=batch_size
    )
    out = parallel.map_batches(forward, X, batch_size, split=not engine.whole_batch_inference(body))
    return scores(model, loss, out, y)


# ------------------------------------------- train_nn's and evaluate_nn's start (fran.distributed's too)


def prepare_training(fn: str, model, X, y, *, optimizer, loss, batch_size):
    """train_nn's checks and conversions, named for `fn`: (the model with the optimizer's state
    for this epoch, the optimizer, the loss, X, y). fran.distributed.train_nn starts with it."""
    model = _check_model(fn, model)
    try:
        optimizer = get_optimizer(optimizer)
    except ValueError as exc:
        raise ValueError(f"{fn}: {exc}") from None
    loss = _default_loss(fn, model, loss)
    X = prepare_inputs(fn, model, X)
    y = prepare_targets(fn, model, loss, y, len(X))
    _check_batch_size(fn, batch_size, len(X))
    _check_every_batch_counts(fn, loss, y, batch_size)
    return attrs.evolve(model, opt_state=_opt_state_for(optimizer, model)), optimizer, loss, X, y


def prepare_evaluation(fn: str, model, X, y, *, loss, batch_size):
    """evaluate_nn's checks and conversions, named for `fn`: (model, loss, X, y, the network the
    loss sees, its forward function x -> outputs). fran.distributed.evaluate_nn starts with it."""
    model = _check_model(fn, model)
    loss = _default_loss(fn, model, loss)
    X = prepare_inputs(fn, model, X)
    y = prepare_targets(fn, model, loss, y, len(X))
    _check_batch_size(fn, batch_size, len(X))
    body, cut = loss_head(model.spec, loss)
    forward = _infer(body, _head(model.params, cut), _head(model.state, cut))
    return model, loss, X, y, body, forward


def scores(model: Model, loss: Loss, out: np.ndarray, y: np.ndarray) -> dict:
    """evaluate_nn's result from the outputs: mean loss, n and, for classifiers, accuracy."""
    value, _ = loss.fn(out, y)
    result = {"loss": value, "n": len(out)}
    if loss.per_position:
        counted = np.ones(y.shape, bool) if loss.ignore_index is None else y != loss.ignore_index
        result["accuracy"] = float((out.argmax(axis=-1) == y)[counted].mean())
        result["positions"] = int(counted.sum())
    elif loss.on_logits or isinstance(model.spec.layers[-1], softmax):
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        result["accuracy"] = float((out.argmax(axis=1) == labels).mean())
    return result


__all__ = [
    "OptimizerStateWarning",
    "TrainingError",
    "cross_entropy",
    "evaluate_nn",
    "minibatches",
    "mse",
    "predict",
    "scan",
    "train_nn",
    "train_step",
]
