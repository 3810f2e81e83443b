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


def tree_map(f: Callable, tree, *rest, path: str = ""):
    """Apply f leafwise over trees of identical structure, rebuilding the same containers."""
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or other.keys() != tree.keys():
                raise ValueError(
                    f"tree structure differs at {path or 'root'}: {_desc(tree, other)}"
                )
        return {
            k: tree_map(f, v, *(o[k] for o in rest), path=f"{path}[{k!r}]") for k, v in tree.items()
        }
    if isinstance(tree, (tuple, list)):
        for other in rest:
            if type(other) is not type(tree) or len(other) != len(tree):
                raise ValueError(
                    f"tree structure differs at {path or 'root'}: {_desc(tree, other)}"
                )
        children = [
            tree_map(f, v, *(o[i] for o in rest), path=f"{path}[{i}]") for i, v in enumerate(tree)
        ]
        if _is_namedtuple(tree):
            return type(tree)(*children)
        return type(tree)(children)
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
    return [leaf for _, leaf in tree_items(tree)]


def tree_zeros_like(tree):
    return tree_map(np.zeros_like, tree)


def tree_add(a, b):
    return tree_map(np.add, a, b)


def tree_scale(tree, s):
    return tree_map(lambda x: x * s, tree)


def tree_vdot(a, b) -> float:
    """Sum over leaves of <a, b>, the inner product used by gradient checks."""
    return float(sum(np.vdot(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True)))


def tree_size(tree) -> int:
    return sum(np.size(leaf) for leaf in tree_leaves(tree))


def freeze(tree):
    """Mark every array leaf read-only in place of copying (the arrays are fresh and unshared)."""
    for leaf in tree_leaves(tree):
        if isinstance(leaf, np.ndarray):
            leaf.flags.writeable = False
    return tree
