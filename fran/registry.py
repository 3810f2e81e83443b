"""The layer registry: every layer kind, built-in or plugin, is a few pure callables.

The contract (the same for built-ins and plugins). A plain layer gives five callables:

    spec_cls                      a frozen, hashable attrs class holding hyperparameters only
    output_shape(spec, shape)     -> per-sample output shape (no batch axis)
    init(spec, shape, rng)        -> params: a dict of NumPy arrays ({} for no params)
    apply(spec, params, x)        -> y, for a batch x (NCHW for images)
    vjp(spec, params, x)          -> (y, pullback)
    pullback(gy)                  -> (gparams, gx)

`gparams` has the same keys and shapes as `params`; nothing is mutated in place. A pullback may
also take `input_grad=True` as a keyword, `pullback(gy, input_grad=False) -> (gparams, None)`:
then it may skip gx. The engine asks this of a network's first layer while training, where the
gradient of the data is never used; a pullback without that keyword is simply called as
`pullback(gy)` (the engine looks at its signature), so it is an offer, not a duty.

Optional capabilities, declared when registering; each adds one keyword to apply and vjp, and
only the layers that declare it receive it:

    has_modes=True    apply/vjp get `training=` (True in train_nn/train_step, False in
                      evaluate_nn/predict); a layer that behaves the same in both omits it.
    needs_rng=True    apply/vjp get `rng=`: a fresh numpy Generator for this layer and this call,
                      or None when the caller gave no key (inference needs none). The network
                      fold spawns one per layer from the caller's key; train_step's key is
                      (model seed, 1, step), so a run is reproducible and resumable.
    init_state=f      f(spec, shape) -> state, a dict of arrays (running statistics); apply/vjp
                      get `state=` and return (y, new_state) / (y, pullback, new_state). The old
                      state is never changed; the network fold threads the new one.
    batchwise=True    in training the output of a sample depends on the whole batch (batch
                      norm); train_step then never cuts the batch into pieces (fran.parallel).

A layer built of other layers (fran's network and residual) finds its sub-layers in its attrs
fields; fran.engine walks those to decide whether a batch may be cut into pieces: only when no
layer inside is random, stateful or batchwise. A plain layer acts on each sample of a batch on its
own and must be thread-safe, since training and inference cut batches into pieces computed on
parallel threads.

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

GROUP = "fran.layers"


class RegistryError(LookupError):
    """A layer name or spec type the registry cannot resolve, or a broken plugin."""


class LayerRules(NamedTuple):
    name: str
    spec_cls: type
    output_shape: Callable[[Any, tuple], tuple]
    init: Callable[..., dict]
    apply: Callable[..., Any]
    vjp: Callable[..., tuple]
    skips_input_grad: bool = False  # kept for plugins written before v2; the pullback says it now
    has_modes: bool = False
    needs_rng: bool = False
    init_state: Callable[..., dict] | None = None
    batchwise: bool = False


_BY_NAME: dict[str, LayerRules] = {}
_BY_TYPE: dict[type, LayerRules] = {}


def register(
    name: str,
    spec_cls: type | None = None,
    *,
    output_shape,
    init,
    apply,
    vjp,
    skips_input_grad: bool = False,
    has_modes: bool = False,
    needs_rng: bool = False,
    init_state=None,
    batchwise: bool = False,
):
    """Register a layer kind under `name`; usable as a class decorator when spec_cls is omitted."""
    if spec_cls is None:
        return lambda cls: register(
            name,
            cls,
            output_shape=output_shape,
            init=init,
            apply=apply,
            vjp=vjp,
            skips_input_grad=skips_input_grad,
            has_modes=has_modes,
            needs_rng=needs_rng,
            init_state=init_state,
            batchwise=batchwise,
        )
    for rule_name, rule in (("output_shape", output_shape), ("init", init), ("apply", apply)):
        if not callable(rule):
            raise TypeError(f"register({name!r}): {rule_name} must be callable, got {rule!r}")
    if not callable(vjp):
        raise TypeError(f"register({name!r}): vjp must be callable, got {vjp!r}")
    if init_state is not None and not callable(init_state):
        raise TypeError(
            f"register({name!r}): init_state must be callable or None, got {init_state!r}"
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
    rules = LayerRules(
        name,
        spec_cls,
        output_shape,
        init,
        apply,
        vjp,
        bool(skips_input_grad),
        bool(has_modes),
        bool(needs_rng),
        init_state,
        bool(batchwise),
    )
    _BY_NAME[name] = rules
    _BY_TYPE[spec_cls] = rules
    return spec_cls


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
