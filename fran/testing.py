"""Conformance checks for layers, reusable by plugin authors (needs only NumPy, attrs and fran).

A layer passes `check_layer` when, on the batch you give it, in float64:
  1. apply's output has shape (N, *output_shape(spec, x.shape[1:])) and x's dtype;
  2. vjp's primal output equals apply's;
  3. the pullback agrees with central finite differences along one random direction:
     <dx, vx> + <dparams, vp>  ~=  (f(+eps) - f(-eps)) / (2 eps),  f(t) = <dy, apply(p + t vp, x + t vx)>;
  4. nothing is written in place (x, params and dy are read-only while the layer runs);
  5. dparams has exactly params' tree structure and shapes, and dx has x's shape;
  6. pullback(dy, input_grad=False), as the engine calls it (fran.engine.pull), gives (dparams, None);
  7. a layer with modes is checked in both, training with a fixed key (the same mask each call);
  8. state: inference leaves it as it was, training returns a new value of the same structure,
     the old one is never changed (it is read-only while the layer runs);
  9. randomness: the same key gives the same output, other keys other outputs (or, for a
     configuration without randomness such as dropout(0), the inference output), and inference
     does not depend on the key;
 10. per sample: a layer declared per_sample=True (or "inference") gives, on the batch, what it
     gives on the batch's two halves (to rounding) in each mode it claims (training only for a
     layer without randomness or state: a random layer's halves draw from other keys); a false claim fails, saying
     what to declare. A layer that declares nothing and passes is told it may declare it.

Pick x and params away from kinks (relu at 0, maxpooling ties), or the finite differences lie:

    from fran.testing import check_init, check_layer
    params = check_init(my_layer(3), (2, 8, 8), dtype=np.float64)
    check_layer(my_layer(3), params, rng.normal(size=(4, 2, 8, 8)), rng=0)
"""

from __future__ import annotations

import warnings

import numpy as np

from fran import engine, parallel, registry
from fran.tree import freeze, tree_items, tree_leaves, tree_map, tree_vdot


def _frozen_copy(tree):
    """A float64, read-only deep copy of a tree (the caller's arrays are left alone)."""
    return freeze(tree_map(lambda a: np.array(a, dtype=np.float64), tree))


def _call(what: str, spec, fn, *args):
    """fn(*args), turning NumPy's read-only write error into an assertion naming the layer."""
    try:
        return fn(*args)
    except ValueError as exc:
        if "read-only" in str(exc):
            raise AssertionError(f"{spec!r}: {what} writes into a read-only input: {exc}") from exc
        raise


def _structure(tree) -> list[tuple[str, tuple]]:
    return [(path, np.shape(leaf)) for path, leaf in tree_items(tree)]


def check_layer(
    spec,
    params,
    x,
    *,
    rng,
    state=None,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float | None = None,
) -> None:
    """Assert that a layer's rules are consistent, pure and correctly differentiated at (params, x),
    in inference mode and, for a layer with modes, in training mode with a fixed key.

    Args:
        spec: a registered layer spec.
        params: its params (any dtype; checked in a float64 copy).
        x: a batch (N, *sample_shape) away from the layer's kinks.
        rng: a numpy Generator or int seed for dy, the random direction and the keys.
        state: the layer's state (None: fran.init_state's), for layers that carry one.
        eps: the finite-difference step.
        rtol: relative tolerance of the directional-derivative comparison.
        atol: absolute tolerance; None means the round-off floor of the central difference,
            16 * float64 eps * sum|dy * y| / eps.
    Raises:
        AssertionError: naming the spec, the shapes and the failed property.
    """
    rng = engine.as_generator(rng)
    if state is None:
        state = engine.init_state(spec, np.shape(x)[1:], np.float64)
    caps = registry.capabilities(spec)
    modes = (False, True) if caps.has_modes or caps.needs_rng else (False,)
    for training in modes:
        _check_mode(spec, params, x, state, rng, training, eps, rtol, atol)
    if caps.needs_rng:
        _check_randomness(spec, params, x, state, rng)
    if len(x) >= 2:  # a claim needs two halves to prove
        check_per_sample(spec, params, x, state=state, rng=rng)
        if caps.sums_batch and not caps.needs_rng:
            check_batch_sums(spec, params, x, state=state, rng=rng)


class PerSampleHint(UserWarning):
    """check_layer's note that a layer acts per sample but does not declare it."""


def _halves_agree(spec, params, x, state, training, key) -> str | None:
    """None if apply on x equals apply on its two halves, stacked; else what differed."""
    kw = {"state": state, "key": key, "training": training}
    whole = engine.apply(spec, params, x, **kw)
    h = len(x) // 2
    halves = np.concatenate(
        [engine.apply(spec, params, x[:h], **kw), engine.apply(spec, params, x[h:], **kw)]
    )
    scale = max(float(np.abs(whole).max(initial=0.0)), 1.0)
    diff = float(np.abs(whole - halves).max(initial=0.0))
    if diff <= 1e-9 * scale:
        return None
    mode = "training" if training else "inference"
    return f"in {mode} mode the batch's outputs differ from its halves' by up to {diff:.3g}"


def check_per_sample(spec, params, x, *, state=None, rng=0) -> None:
    """Assert the layer's per_sample claim (fran.registry.capabilities) on batch x (at least 2
    samples): its outputs on x equal its outputs on x's two halves, in every mode it claims.

    A layer that claims nothing is not failed: if it passes anyway in every mode, a
    PerSampleHint warning says that declaring per_sample=True lets fran cut its batches.
    """
    x = freeze(np.array(x, dtype=np.float64))
    if len(x) < 2:
        raise ValueError(f"check_per_sample: x needs at least 2 samples, got shape {x.shape}")
    params = _frozen_copy(params)
    state = _frozen_copy(
        engine.init_state(spec, x.shape[1:], np.float64) if state is None else state
    )
    caps = registry.capabilities(spec)
    key = int(engine.as_generator(rng).integers(2**31))
    fixed_draws = not caps.needs_rng and not caps.has_state  # fran cuts its training batches
    claimed = {True: (False, True) if fixed_draws else (False,), "inference": (False,)}
    modes = claimed.get(caps.per_sample, ())
    for training in modes:
        failure = _halves_agree(spec, params, x, state, training, key)
        if failure is not None:
            fix = (
                'per_sample="inference" if each sample\'s inference output depends on that '
                "sample alone, else per_sample=False"
                if training
                else "per_sample=False"
            )
            raise AssertionError(
                f"{spec!r} claims per_sample={caps.per_sample!r}, but {failure} (x of shape "
                f"{x.shape}): a sample's output depends on the others; declare {fix} (the "
                f"default; fran then computes its batches whole)"
            )
    if caps.per_sample is False and not _inner_undeclared(spec):
        both = (False, True) if caps.has_modes and fixed_draws else (False,)
        if all(_halves_agree(spec, params, x, state, t, key) is None for t in both):
            warnings.warn(  # named by its kind, so that a test suite shows it once per kind
                f"layer {registry.rules_for(spec).name!r} gave the same outputs for a batch as "
                f"for its halves; if each sample's output depends on that sample alone, register "
                f"it with per_sample=True and fran may cut its batches across threads",
                PerSampleHint,
                stacklevel=2,
            )


def check_batch_sums(spec, params, x, *, state=None, rng=0) -> None:
    """Assert the needs_batch claim (fran.registry) on batch x (at least 2 samples): in training,
    x's two halves run in lockstep (fran.parallel, each batch.sum over both) give x's outputs,
    new state, params' gradients (added) and input gradient (stacked), to rounding, for a
    random cotangent: the layer couples its samples through batch.sum alone."""
    x = freeze(np.array(x, dtype=np.float64))
    if len(x) < 2:
        raise ValueError(f"check_batch_sums: x needs at least 2 samples, got shape {x.shape}")
    params = _frozen_copy(params)
    state = _frozen_copy(
        engine.init_state(spec, x.shape[1:], np.float64) if state is None else state
    )
    y, pullback, new_state = engine.layer_vjp(spec, params, x, state, None, True)
    dy = freeze(engine.as_generator(rng).normal(size=np.shape(y)))
    whole = (y, *pullback(dy), new_state)

    def piece(xp, dyp, _piece, batch, _weight):
        yp, pb, sp = engine.layer_vjp(spec, params, xp, state, None, True, batch)
        return (yp, *pb(dyp), sp)

    h = len(x) // 2
    a, b = parallel.lockstep_pieces(piece, x, dy, [(0, h), (h, len(x))], weights=[1.0, 1.0])
    halves = (
        np.concatenate([a[0], b[0]]),
        parallel.add_in_order([a[1], b[1]]),
        np.concatenate([a[2], b[2]]),
        a[3],
    )
    for what, got, want in zip(
        ("outputs", "params' gradients", "input gradient", "new state"), halves, whole, strict=True
    ):
        for g, w in zip(tree_leaves(got), tree_leaves(want), strict=True):
            scale = max(float(np.abs(w).max(initial=0.0)), 1.0)
            diff = float(np.abs(np.asarray(g) - w).max(initial=0.0))
            if diff > 1e-9 * scale:
                raise AssertionError(
                    f"{spec!r} declares needs_batch, but in training its two halves in lockstep "
                    f"give {what} that differ from the batch's by up to {diff:.3g} (x of shape "
                    f"{x.shape}): some sum over the batch does not go through batch.sum"
                )


def _inner_undeclared(spec) -> bool:
    """Whether spec holds layers of which some is not per sample (the hint is theirs to take)."""
    return any(registry.capabilities(s).per_sample is False for s in registry.sublayers(spec))


def _check_randomness(spec, params, x, state, rng) -> None:
    """The same key gives the same output, other keys other outputs (or, for a layer of its own,
    the inference one: dropout(0)); inference ignores the key."""
    x = np.array(x, dtype=np.float64)
    x = np.concatenate([x] * -(-64 // len(x)))  # at least 64 samples: one mask never repeats
    x, params, state = freeze(x), _frozen_copy(params), _frozen_copy(state)
    where = f"{spec!r} on x of shape {x.shape}"
    key = int(rng.integers(2**31))

    def run(key, training):
        return engine.apply(spec, params, x, state=state, key=key, training=training)

    np.testing.assert_array_equal(
        run(key, True), run(key, True), err_msg=f"{where}: same key, other output"
    )
    others = [run(key + i, True) for i in range(1, 6)]
    if all(np.array_equal(o, others[0]) for o in others) and not engine.sublayers(spec):
        np.testing.assert_allclose(
            others[0],
            run(None, False),
            rtol=1e-12,
            atol=1e-12,
            err_msg=f"{where}: five keys gave one training output that is not the inference one",
        )
    for k in (key, key + 1, None):
        np.testing.assert_array_equal(
            run(k, False), run(None, False), err_msg=f"{where}: inference depends on the key"
        )


def _check_mode(spec, params, x, state, rng, training, eps, rtol, atol) -> None:
    x0, p0, s0 = np.array(x, dtype=np.float64), _frozen_copy(params), _frozen_copy(state)
    x, params, state = freeze(x0.copy()), _frozen_copy(p0), _frozen_copy(s0)
    mode = "training" if training else "inference"
    where = f"{spec!r} in {mode} mode on x of shape {x.shape}"
    key = int(rng.integers(2**31)) if training else None
    kw = {"state": state, "key": key, "training": training}

    y, new_state = _call("apply", spec, lambda: engine.apply_with_state(spec, params, x, **kw))
    want = (x.shape[0], *engine.output_shape(spec, x.shape[1:]))
    assert y.shape == want, f"{where}: apply gave shape {y.shape}, output_shape says {want}"
    assert y.dtype == x.dtype, f"{where}: apply turned {x.dtype} into {y.dtype}"
    assert _structure(new_state) == _structure(state), (
        f"{where}: the new state {_structure(new_state)} differs from the old {_structure(state)}"
    )
    if not training:
        for (path, a), (_, b) in zip(tree_items(new_state), tree_items(state), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{where}: inference changed state {path}")

    y2, pullback, state2 = _call("vjp", spec, lambda: engine.vjp_with_state(spec, params, x, **kw))
    assert np.shape(y2) == y.shape, f"{where}: vjp gave shape {np.shape(y2)}, apply {y.shape}"
    np.testing.assert_allclose(
        y2, y, rtol=1e-12, atol=1e-12, err_msg=f"{where}: vjp(...)[0] != apply"
    )
    for (path, a), (_, b) in zip(tree_items(state2), tree_items(new_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{where}: state {path}")

    dy = freeze(rng.standard_normal(y.shape))
    gparams, gx = _call("pullback", spec, pullback, dy)
    assert np.shape(gx) == x.shape, f"{where}: dx has shape {np.shape(gx)}, x has {x.shape}"
    assert _structure(gparams) == _structure(params), (
        f"{where}: dparams {_structure(gparams)} differs from params {_structure(params)}"
    )

    g2, gx2 = _call("pullback", spec, lambda: engine.pull(pullback, dy, input_grad=False))
    assert gx2 is None, f"{where}: pullback(dy, input_grad=False) returned a dx"
    for (path, a), (_, b) in zip(tree_items(g2), tree_items(gparams), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{where}: {path}")

    vx = rng.standard_normal(x.shape)
    vp = tree_map(lambda a: rng.standard_normal(a.shape), params)
    analytic = float(np.vdot(gx, vx)) + tree_vdot(gparams, vp)

    def f(t: float) -> float:
        moved = tree_map(lambda a, v: a + t * v, params, vp)
        return float(np.vdot(dy, engine.apply(spec, moved, x + t * vx, **kw)))

    numeric = (f(eps) - f(-eps)) / (2 * eps)
    tol_abs = atol
    if tol_abs is None:
        tol_abs = 16 * np.finfo(np.float64).eps * float(np.abs(dy * y).sum()) / eps
    tol = tol_abs + rtol * max(abs(analytic), abs(numeric))
    assert abs(analytic - numeric) <= tol, (
        f"{where}, params {_structure(params)}: vjp gives directional derivative {analytic!r}, "
        f"finite differences {numeric!r} (|diff| {abs(analytic - numeric):.3g} > tol {tol:.3g})"
    )

    assert np.array_equal(x, x0), f"{where}: x changed during the checks"
    for what, tree, orig in (("params", params, p0), ("state", state, s0)):
        for (path, a), (_, b) in zip(tree_items(tree), tree_items(orig), strict=True):
            assert np.array_equal(a, b), f"{where}: {what}[{path}] changed during the checks"


def check_init(spec, shape, *, rng=0, dtype=np.float32):
    """Assert that init gives read-only `dtype` arrays, reproducibly, and return the params.

    Also checks that param_shapes and state_shapes (fran.engine) describe what init and
    init_state make, that output_shape is a tuple of positive ints matching apply on a zero and on a
    random batch, and that apply's output, vjp's output, dx and every dparams leaf stay in
    `dtype` (float32 training must not upcast to float64 anywhere).

    Args:
        spec: a registered layer spec.
        shape: a per-sample input shape (no batch axis) the spec accepts.
        rng: an int seed (the same seed must give the same params).
        dtype: the params' dtype to request.
    Returns:
        The params.
    """
    params = engine.init(spec, shape, rng, dtype=dtype)
    again = engine.init(spec, shape, rng, dtype=dtype)
    where = f"{spec!r} on samples of shape {tuple(shape)}"
    assert isinstance(params, dict) or isinstance(spec, engine.network), (
        f"{where}: init returned a {type(params).__name__}, not a dict ({{}} when no params)"
    )
    for (path, a), (_, b) in zip(tree_items(params), tree_items(again), strict=True):
        assert isinstance(a, np.ndarray), f"{where}: params[{path}] is {type(a).__name__}"
        assert a.dtype == np.dtype(dtype), f"{where}: params[{path}] is {a.dtype}, not {dtype}"
        assert not a.flags.writeable, f"{where}: params[{path}] is writeable"
        assert np.array_equal(a, b), f"{where}: params[{path}] differs between two inits"
    out = engine.output_shape(spec, shape)
    assert isinstance(out, tuple) and all(
        isinstance(n, (int, np.integer)) and n >= 1 for n in out
    ), f"{where}: output_shape gave {out!r}"
    state = engine.init_state(spec, shape, dtype)
    for path, a in tree_items(state):
        assert a.dtype == np.dtype(dtype) and not a.flags.writeable, f"{where}: state[{path}]"
    for what, made, told in (
        ("init", params, engine.param_shapes(spec, shape, dtype)),
        ("init_state", state, engine.state_shapes(spec, shape, dtype)),
    ):  # the shape-only trees (a param_shapes/state_shapes rule) must be what init makes
        rule = "param_shapes" if what == "init" else "state_shapes"
        assert _structure(told) == _structure(made), (
            f"{where}: {rule} gives {_structure(told)}, {what} makes {_structure(made)}"
        )
    x = np.random.default_rng(rng).standard_normal((2, *shape)).astype(dtype)
    for training in (False, True):  # both modes, a fixed key for the training one
        kw = {"state": state, "key": 0, "training": training}
        for batch in (np.zeros_like(x), x):
            y = engine.apply(spec, params, batch, **kw)
            assert y.shape == (2, *out), (
                f"{where}: apply gave {y.shape}, output_shape says (2, *{out})"
            )
            assert y.dtype == np.dtype(dtype), f"{where}: apply turned {dtype} input into {y.dtype}"
        y, pullback, new_state = engine.vjp_with_state(spec, params, x, **kw)
        assert y.dtype == np.dtype(dtype), f"{where}: vjp turned {dtype} input into {y.dtype}"
        for path, a in tree_items(new_state):
            assert a.dtype == np.dtype(dtype), (
                f"{where}: new state[{path}] is {a.dtype}, not {dtype}"
            )
        gparams, gx = pullback(np.ones_like(y))
        assert gx.dtype == np.dtype(dtype), f"{where}: dx is {gx.dtype}, not {dtype}"
        for path, g in tree_items(gparams):
            assert g.dtype == np.dtype(dtype), f"{where}: dparams[{path}] is {g.dtype}, not {dtype}"
    return params
