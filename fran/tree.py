"""Pytrees: nested dicts, tuples and NamedTuples whose leaves are NumPy arrays (or scalars).

Params are a tuple of per-layer dicts `{"w": ..., "b": ...}`; optimizer states are NamedTuples of
params-shaped trees. These helpers rebuild trees, never mutate them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def _is_namedtuple(t) -> bool:
    return isinstance(t, tuple) and hasattr(t, "_fields")


class _Mismatch(Exception):
    """Raised inside the recursion; collects the path on its way out (no string work otherwise)."""

    def __init__(self, what: str):
        self.what, self.path = what, []


def tree_map(f: Callable, tree, *rest):
    """Apply f leafwise over trees of identical structure, rebuilding the same containers.

    A structure mismatch raises ValueError naming the path, e.g. `[2]['w']`.
    """
    try:
        return _map(f, tree, rest)
    except _Mismatch as m:
        where = "".join(reversed(m.path)) or "root"
        raise ValueError(f"tree structure differs at {where}: {m.what}") from None


def _map(f, tree, rest):
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or other.keys() != tree.keys():
                raise _Mismatch(_desc(tree, other))
        out = {}
        for k, v in tree.items():
            try:
                out[k] = _map(f, v, [o[k] for o in rest])
            except _Mismatch as m:
                m.path.append(f"[{k!r}]")
                raise
        return out
    if isinstance(tree, (tuple, list)):
        for other in rest:
            if type(other) is not type(tree) or len(other) != len(tree):
                raise _Mismatch(_desc(tree, other))
        children = []
        for i, v in enumerate(tree):
            try:
                children.append(_map(f, v, [o[i] for o in rest]))
            except _Mismatch as m:
                m.path.append(f"[{i}]")
                raise
        return type(tree)(*children) if _is_namedtuple(tree) else type(tree)(children)
    return f(tree, *rest)


def _desc(a, b) -> str:
    def one(t):
        if isinstance(t, dict):
            return f"dict with keys {sorted(t)}"
        if isinstance(t, (tuple, list)):
            return f"{type(t).__name__} of length {len(t)}"
        return type(t).__name__

    return f"{one(a)} versus {one(b)}"


def tree_items(tree, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, leaf) pairs, paths like '0/w' (dict keys and sequence indices joined by '/')."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from tree_items(v, f"{path}/{k}" if path else str(k))
    elif isinstance(tree, (tuple, list)):
        for i, v in enumerate(tree):
            yield from tree_items(v, f"{path}/{i}" if path else str(i))
    else:
        yield path, tree


def tree_leaves(tree) -> list:
    """The leaves in the order of tree_items (dict order, then sequence order), without paths."""
    out: list = []
    _collect(tree, out)
    return out


def _collect(tree, out: list) -> None:
    if isinstance(tree, dict):
        for v in tree.values():
            _collect(v, out)
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            _collect(v, out)
    else:
        out.append(tree)


def ravel(tree) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """(vector, unravel): the leaves laid end to end in one fresh 1-D array, and the function
    turning such a vector back into a tree of the same structure whose leaves are views into it.

    As jax.flatten_util.ravel_pytree. Optimizers work on one vector instead of leaf by leaf: a
    dozen NumPy calls per step instead of a dozen per leaf, whose Python overhead was most of
    Adam's time on these small networks. Leaves keep their dtypes through unravel.
    """
    leaves = [np.asarray(x) for x in tree_leaves(tree)]
    vector = np.concatenate([x.ravel() for x in leaves]) if leaves else np.zeros(0)

    def unravel(vec: np.ndarray):
        views, start = [], 0
        for x in leaves:
            view = vec[start : start + x.size].reshape(x.shape)
            views.append(view if view.dtype == x.dtype else view.astype(x.dtype))
            start += x.size
        return _rebuild(tree, iter(views))

    return vector, unravel


def _rebuild(tree, leaves: Iterator):
    """tree's structure with its leaves replaced, in order, by the next items of `leaves`."""
    if isinstance(tree, dict):
        return {k: _rebuild(v, leaves) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        children = [_rebuild(v, leaves) for v in tree]
        return type(tree)(*children) if _is_namedtuple(tree) else type(tree)(children)
    return next(leaves)


def tree_zeros_like(tree):
    return tree_map(np.zeros_like, tree)


def tree_vdot(a, b) -> float:
    """Sum over leaves of <a, b>, the inner product used by gradient checks."""
    return float(sum(np.vdot(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True)))


def tree_size(tree) -> int:
    return sum(np.size(leaf) for leaf in tree_leaves(tree))


def freeze(tree):
    """Mark every array leaf read-only in place of copying (the arrays are fresh and unshared)."""
    if isinstance(tree, dict):
        for v in tree.values():
            freeze(v)
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            freeze(v)
    elif isinstance(tree, np.ndarray):
        tree.flags.writeable = False
    return tree
