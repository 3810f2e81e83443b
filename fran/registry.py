"""The layer registry: every layer kind, built-in or plugin, is a spec class and a few pure callables.

The contract (the same for built-ins and plugins). Only `spec_cls` and `vjp` are required:

    spec_cls                      a frozen, hashable attrs class holding hyperparameters only
    vjp(spec, params, x)          -> (y, pullback), for a batch x (NCHW for images)
    pullback(gy)                  -> (gparams, gx)
    apply(spec, params, x)        -> y                 default: vjp(...)[0], the pullback dropped
    init(spec, shape, rng)        -> params, a dict    default: {} (no params)
    output_shape(spec, shape)     -> per-sample shape  default: the input's (no batch axis)

`gparams` has the same keys and shapes as `params`; nothing is mutated in place. A pullback may
also take `input_grad=True` as a keyword, `pullback(gy, input_grad=False) -> (gparams, None)`:
then it may skip gx. The engine asks this of a network's first layer while training, where the
gradient of the data is never used; a pullback without that keyword is simply called as
`pullback(gy)` (the engine looks at its signature), so it is an offer, not a duty.

Declarations, made when registering (every one optional):

    per_sample=True   the outputs for each sample depend on that sample alone, in both modes
                      (dense, conv2d, pooling, dropout at inference...). Only then may fran cut a
                      batch into pieces computed on parallel threads (fran.parallel); a layer that
                      does not say so is computed whole: always correct, maybe slower.
                      per_sample="inference" says it for inference only (batch norm).
                      fran.testing.check_layer proves the claim (a batch against its two halves).
    has_modes=True    apply/vjp get `training=` (True in train_nn/train_step, False in
                      evaluate_nn/predict); a layer that behaves the same in both omits it.
    needs_rng=True    apply/vjp get `rng=`: a fresh numpy Generator for this layer and this call,
                      or None when the caller gave no key (inference needs none). The network
                      fold spawns one per layer from the caller's key; train_step's key is
                      (model seed, 1, step), so a run is reproducible and resumable. A random
                      per-sample layer's training batch is cut too: each piece draws from its
                      own key (fran.train.piece_key), so draws depend on no thread/rank count.
    init_state=f      f(spec, shape) -> state, a dict of arrays (running statistics); apply/vjp
                      get `state=` and return (y, new_state) / (y, pullback, new_state). The old
                      state is never changed; the network fold threads the new one. A stateful
                      layer's training batch is never cut, unless it also declares needs_batch.
    needs_batch=True  in training, apply/vjp get `batch=`: an object whose `batch.sum(tree)` is
                      the tree (of arrays, the same structure, shapes and dtypes on every piece)
                      summed over the whole batch, whatever pieces, threads or ranks hold it
                      (jax.lax.psum's role); for a batch computed whole it returns the tree. A
                      layer that couples samples only through such sums, and computes its new
                      state from them alone (batch norm's statistics), declares it: its batch is
                      then cut into pieces that run in lockstep, each sum added in piece order,
                      so the result is bitwise the same for any thread or rank count and equal
                      to the whole batch's to rounding. Its pullback sums through `batch` too.
    param_shapes=f    f(spec, shape) -> {name: shape}: the params' shapes, without allocating
                      (fran.engine.param_shapes; loading a file checks sizes with it). Without
                      it, fran runs init on a Generator whose draws are zero-stride views, so a
                      plugin's own np.zeros/np.ones are its only allocations.
    state_shapes=f    the same for init_state (without it, init_state itself is run).

A layer built of other layers holds them in its attrs fields (directly or in tuples);
`capabilities(spec)` joins its declarations with theirs, and is the one place fran asks: such a
layer needs modes, a key or state if it declared them or some layer inside does, and is per
sample only if it declared it and every layer inside is. Registered with combinator=True (as
network and residual are), it declares no modes or key of its own: its apply/vjp take
`training=False, rng=None` as defaults and receive them only when a layer inside needs them (and
`state=` whenever it registered init_state, None when nothing inside has state). A combinator
that passes `batch=` on to its layers (as network and residual do) registers needs_batch=True
and takes `batch=None` as a default; one that does not is computed whole when a layer inside
sums over the batch.

Every layer must be thread-safe (pieces of a batch run on parallel threads) and read its inputs
only. Old keywords still work: `batchwise=True` (v2) means per_sample=False, and
`skips_input_grad` (v1) is accepted and ignored (the pullback's signature says it now).

Built-ins register in code when `fran.layers` is imported. Other distributions declare an entry
point in the group ``fran.layers`` whose value is their spec class, e.g. in pyproject.toml

    [project.entry-points."fran.layers"]
    avgpooling = "fran_avgpool:avgpooling"

Loading it imports the module, which calls `register(...)` exactly as the built-ins do. Entry
points are queried once, lazily; `names()` lists them without importing anything; `get(name)`
loads only the one it needs. A plugin that fails to load fails alone, with its name.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs

GROUP = "fran.layers"


class RegistryError(LookupError):
    """A layer name or spec type the registry cannot resolve, or a broken plugin."""


class LayerRules(NamedTuple):
    """A layer kind's callables and declarations, as `register` completed them."""

    name: str
    spec_cls: type
    output_shape: Callable[[Any, tuple], tuple]
    init: Callable[..., dict]
    apply: Callable[..., Any]
    vjp: Callable[..., tuple]
    has_modes: bool = False
    needs_rng: bool = False
    init_state: Callable[..., dict] | None = None
    per_sample: bool | str = False
    param_shapes: Callable[..., dict] | None = None
    state_shapes: Callable[..., dict] | None = None
    combinator: bool = False
    needs_batch: bool = False


class Capabilities(NamedTuple):
    """What a spec needs, with the layers inside it: see `capabilities`."""

    has_modes: bool
    needs_rng: bool
    has_state: bool
    per_sample: bool | str  # True, "inference" (batch norm) or False
    # every layer that couples the batch (or has state) does so through batch.sum alone, and
    # every combinator on the way passes `batch` on: pieces in lockstep (needs_batch)
    sums_batch: bool = False

    @property
    def cut_in_training(self) -> bool:
        """Whether a training batch may be computed in pieces: per sample and no state (a random
        layer's pieces draw from keys of their own), or coupled through batch sums alone."""
        return (self.per_sample is True and not self.has_state) or self.sums_batch

    @property
    def cut_in_inference(self) -> bool:
        """Whether an inference batch may be computed in pieces."""
        return self.per_sample in (True, "inference")


class WholeBatch:
    """The batch of a layer that sums over it (fran.registry: needs_batch) when the batch is
    here whole: its sum is the tree itself. fran.parallel's lockstep pieces have the same `sum`."""

    def sum(self, tree):
        return tree

    def __repr__(self) -> str:
        return "WHOLE_BATCH"


WHOLE_BATCH = WholeBatch()


_BY_NAME: dict[str, LayerRules] = {}
_BY_TYPE: dict[type, LayerRules] = {}
_MISSING = object()


def no_params(spec, shape, rng) -> dict:
    """The default init: a layer without params."""
    return {}


def same_shape(spec, shape) -> tuple:
    """The default output_shape: the sample's shape is unchanged."""
    return tuple(shape)


def _apply_from_vjp(vjp):
    def apply(spec, params, x, **kw):
        return _drop_pullback(vjp(spec, params, x, **kw))

    apply.__doc__ = "apply derived from vjp: its output (and new state) without the pullback."
    return apply


def _drop_pullback(out):
    return out[0] if len(out) == 2 else (out[0], out[2])


def register(
    name: str,
    spec_cls: type | None = None,
    *,
    vjp=None,
    apply=None,
    init=None,
    output_shape=None,
    init_state=None,
    has_modes: bool = False,
    needs_rng: bool = False,
    per_sample: bool | str | None = None,
    param_shapes=None,
    state_shapes=None,
    combinator: bool = False,
    needs_batch: bool = False,
    batchwise=_MISSING,
    skips_input_grad=_MISSING,
):
    """Register a layer kind under `name`; usable as a class decorator when spec_cls is omitted.

    Only `vjp` is required; see the module docstring for the defaults and the declarations.
    `batchwise=True` (the v2 keyword) means per_sample=False; `skips_input_grad` is ignored.
    """
    if spec_cls is None:
        return lambda cls: register(
            name,
            cls,
            vjp=vjp,
            apply=apply,
            init=init,
            output_shape=output_shape,
            init_state=init_state,
            has_modes=has_modes,
            needs_rng=needs_rng,
            per_sample=per_sample,
            param_shapes=param_shapes,
            state_shapes=state_shapes,
            combinator=combinator,
            needs_batch=needs_batch,
            batchwise=batchwise,
            skips_input_grad=skips_input_grad,
        )
    if not callable(vjp):
        raise TypeError(f"register({name!r}): vjp must be callable, got {vjp!r}")
    for rule_name, rule in (
        ("output_shape", output_shape),
        ("init", init),
        ("apply", apply),
        ("init_state", init_state),
        ("param_shapes", param_shapes),
        ("state_shapes", state_shapes),
    ):
        if rule is not None and not callable(rule):
            raise TypeError(
                f"register({name!r}): {rule_name} must be callable or None, got {rule!r}"
            )
    if combinator and (has_modes or needs_rng):
        raise ValueError(
            f"register({name!r}): a combinator takes has_modes and needs_rng from its layers"
        )
    if batchwise is not _MISSING and batchwise:
        if per_sample not in (None, False):
            raise ValueError(
                f"register({name!r}): batchwise=True contradicts per_sample={per_sample!r}"
            )
    if per_sample is None:
        per_sample = False
    if per_sample not in (True, False, "inference"):
        raise ValueError(
            f"register({name!r}): per_sample must be True, False or 'inference', got {per_sample!r}"
        )
    old = _BY_NAME.get(name)
    if old is not None and old.spec_cls is not spec_cls:
        raise RegistryError(
            f"layer name {name!r} is already registered to {_qualname(old.spec_cls)}; "
            f"cannot register it again for {_qualname(spec_cls)}"
        )
    if spec_cls in _BY_TYPE and _BY_TYPE[spec_cls].name != name:
        raise RegistryError(
            f"{_qualname(spec_cls)} is already registered as {_BY_TYPE[spec_cls].name!r}"
        )
    if init is None and param_shapes is None:
        param_shapes = _no_param_shapes
    rules = LayerRules(
        name,
        spec_cls,
        same_shape if output_shape is None else output_shape,
        no_params if init is None else init,
        _apply_from_vjp(vjp) if apply is None else apply,
        vjp,
        bool(has_modes),
        bool(needs_rng),
        init_state,
        per_sample,
        param_shapes,
        state_shapes,
        bool(combinator),
        bool(needs_batch),
    )
    _BY_NAME[name] = rules
    _BY_TYPE[spec_cls] = rules
    _cached_capabilities.cache_clear()
    return spec_cls


def _no_param_shapes(spec, shape) -> dict:
    return {}


def sublayers(spec) -> tuple:
    """The layer specs held in spec's attrs fields, directly or in a tuple (a network's layers,
    a residual's branches): what makes spec a combinator."""
    found = []
    for field in attrs.fields(type(spec)) if attrs.has(type(spec)) else ():
        value = getattr(spec, field.name)
        for v in value if isinstance(value, tuple) else (value,):
            if type(v) in _BY_TYPE:
                found.append(v)
    return tuple(found)


def capabilities(spec) -> Capabilities:
    """What spec needs, its own declarations joined with those of every layer inside it.

    has_modes / needs_rng / has_state: the layer declared it, or some layer inside does; a
    combinator (registered with combinator=True, as network and residual are) declares none of
    its own, so residual([dense(4), dense(4)]) needs no modes, no key and no state.
    per_sample: the layer declared it and every layer inside is (the weakest claim wins:
    "inference" if some layer inside is per sample only at inference, False if one is not).
    sums_batch: the layer declared needs_batch (a combinator: and everything inside may be
    cut in training, some layer inside through batch sums).
    """
    try:
        return _cached_capabilities(spec)
    except TypeError:  # an unhashable spec: computed afresh
        return _capabilities(spec)


def _capabilities(spec) -> Capabilities:
    rules = rules_for(spec)
    inner = [capabilities(s) for s in sublayers(spec)]
    per_sample = rules.per_sample
    for c in inner:
        if c.per_sample is False or per_sample is False:
            per_sample = False
        elif c.per_sample == "inference":
            per_sample = "inference"
    own = not rules.combinator
    if own:
        sums_batch = rules.needs_batch
    else:  # a combinator passing batch on, holding cuttable layers, some summing the batch
        sums_batch = (
            rules.needs_batch
            and rules.per_sample is True
            and all(c.cut_in_training for c in inner)
            and any(c.sums_batch for c in inner)
        )
    return Capabilities(
        has_modes=(own and rules.has_modes) or any(c.has_modes for c in inner),
        needs_rng=(own and rules.needs_rng) or any(c.needs_rng for c in inner),
        has_state=(own and rules.init_state is not None) or any(c.has_state for c in inner),
        per_sample=per_sample,
        sums_batch=sums_batch,
    )


_cached_capabilities = functools.lru_cache(maxsize=1024)(_capabilities)


def _entry_points() -> tuple:
    """The installed entry points of group `fran.layers` (tests monkeypatch this function)."""
    if os.environ.get("FRAN_DISABLE_PLUGIN_AUTOLOAD"):
        return ()
    import importlib.metadata  # here, not at the top: `import fran` stays fast

    try:
        return tuple(importlib.metadata.entry_points(group=GROUP))
    except Exception:  # some distribution's entry_points.txt is unreadable: skip just that one
        return _entry_points_one_by_one()


def _entry_points_one_by_one() -> tuple:
    """The slow path: read each distribution's entry points alone, warning about broken ones."""
    import importlib.metadata

    found = []
    for dist in importlib.metadata.distributions():
        try:
            found.extend(ep for ep in dist.entry_points if ep.group == GROUP)
        except Exception as exc:
            warnings.warn(
                f"fran.registry: ignoring the entry points of distribution {dist.name!r}: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
    return tuple(found)


@functools.cache
def _plugins() -> dict:
    eps: dict = {}
    for ep in _entry_points():
        eps.setdefault(ep.name, ep)
    return eps


def names() -> list[str]:
    """Built-in and registered names plus installed plugins' names, without loading any plugin."""
    return sorted(set(_BY_NAME) | set(_plugins()))


def get(name: str) -> type:
    """The spec class registered as `name`, loading its plugin on first use."""
    if name in _BY_NAME:
        return _BY_NAME[name].spec_cls
    ep = _plugins().get(name)
    if ep is None:
        raise RegistryError(f"unknown layer {name!r}; known layers: {', '.join(names())}")
    dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
    where = f"layer plugin {ep.name!r} ({ep.value}, from {dist})"
    before = set(_BY_NAME)
    try:
        loaded = ep.load()
    except Exception as exc:
        for half in set(_BY_NAME) - before:  # undo what a half-imported plugin registered
            _BY_TYPE.pop(_BY_NAME.pop(half).spec_cls, None)
        raise RegistryError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
    rules = _BY_NAME.get(name)
    if rules is None:
        raise RegistryError(
            f"{where} loaded but did not call fran.registry.register({name!r}, ...)"
        )
    if loaded is not rules.spec_cls:
        raise RegistryError(
            f"{where} points at {loaded!r}, but {name!r} is registered to "
            f"{_qualname(rules.spec_cls)}"
        )
    return rules.spec_cls


def rules_for(spec) -> LayerRules:
    """The rules for a spec, dispatched on its exact type (a subclass does not inherit rules)."""
    rules = _BY_TYPE.get(type(spec))
    if rules is None:
        raise RegistryError(
            f"{spec!r} is not a registered layer spec (type {_qualname(type(spec))}); "
            f"register it with fran.registry.register(name, cls, ...)"
        )
    return rules


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
