"""Checks of numbers, names and shapes, for fran's own arguments and for plugin authors'.

Each check is a `Check`: a test of one value and the words for what it expects. It is used two
ways, with one message shape, "<where>: <argument> must be <expected>, got <value>":

    @attrs.frozen
    class avgpooling:                               # as attrs field validators
        k: int = attrs.field(validator=validate.positive_int)
        stride: int | None = attrs.field(default=None, validator=validate.optional_positive_int)

    avgpooling(k=0)     # ValueError: avgpooling: k must be an integer >= 1, got 0

    def adam(lr, b1=0.9):                           # as a plain check, naming the function
        validate.in_range(0, 1, closed="left").check("adam", "b1", b1)

    adam(1e-3, b1=1.0)  # ValueError: adam: b1 must be a number in [0, 1), got 1.0

As a field validator the message names the spec's class and the field; `check(where, name,
value)` names what it is given and returns the value. Numbers are Python's or NumPy's, never a
bool (True is an int to Python, never a sensible count or rate), and finite. The shape checks
(`sample_shape`, `image_sample`, `sequence_sample`) take a layer's per-sample shape and raise
"<spec>: expects <what>, got shape <shape>".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Container, Iterable

import numpy as np

__all__ = [
    "Check",
    "boolean",
    "image_sample",
    "in_range",
    "non_negative",
    "non_negative_int",
    "number",
    "one_of",
    "optional",
    "optional_positive_int",
    "positive",
    "positive_int",
    "sample_shape",
    "sequence_sample",
    "shape_tuple",
]


class Check:
    """What one value must be: `test(value) -> bool` and `expected`, the words for it.

    Call it as an attrs field validator, `check(instance, attribute, value)`, or as a plain check,
    `check.check(where, name, value)`; both raise a ValueError naming where, the argument, what
    was expected and what came. Build your own from any test:
    `Check(lambda v: v % 2 == 1, "an odd integer")`.
    """

    __slots__ = ("expected", "test")

    def __init__(self, test: Callable[[object], bool], expected: str):
        self.test, self.expected = test, expected

    def message(self, where: str, name: str, value) -> str:
        """The error's text for `value` given as argument `name` of `where`."""
        return f"{where}: {name} must be {self.expected}, got {value!r}"

    def check(self, where: str, name: str, value):
        """`value` itself if it passes, else a ValueError naming `where` (a function or spec) and
        the argument `name`."""
        if not self.test(value):
            raise ValueError(self.message(where, name, value))
        return value

    def __call__(self, instance, attribute, value) -> None:
        """The attrs field validator: the error names the spec's class and the field."""
        self.check(type(instance).__name__, attribute.name, value)

    def __repr__(self) -> str:
        return f"Check({self.expected!r})"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )


positive_int = Check(lambda v: _is_int(v) and v >= 1, "an integer >= 1")
"""An integer >= 1 (Python's or NumPy's, not a bool): a size, a count, a window."""

non_negative_int = Check(lambda v: _is_int(v) and v >= 0, "an integer >= 0")
"""An integer >= 0 (not a bool): a padding, a step, an epoch."""

number = Check(_is_number, "a finite number")
"""A finite real number, Python's or NumPy's, not a bool."""

positive = Check(lambda v: _is_number(v) and v > 0, "a number > 0")
"""A finite number > 0: a learning rate, an eps."""

non_negative = Check(lambda v: _is_number(v) and v >= 0, "a number >= 0")
"""A finite number >= 0: a weight decay."""

boolean = Check(lambda v: isinstance(v, bool), "True or False")
"""True or False itself (not 0, 1 or a NumPy bool)."""

_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


def in_range(low: float, high: float, *, closed: str = "both") -> Check:
    """A finite number between `low` and `high`; `closed` says which ends belong: "both" [low,
    high], "left" [low, high), "right" (low, high] or "neither" (low, high). For example
    in_range(0, 1, closed="left") is a dropout rate or a momentum."""
    if closed not in _BRACKETS:
        raise ValueError(f"in_range: closed must be one of {sorted(_BRACKETS)}, got {closed!r}")
    left, right = _BRACKETS[closed]

    def test(v) -> bool:
        if not _is_number(v):
            return False
        above = v >= low if left == "[" else v > low
        below = v <= high if right == "]" else v < high
        return above and below

    return Check(test, f"a number in {left}{low}, {high}{right}")


class _Optional(Check):
    __slots__ = ("inner",)

    def __init__(self, inner: Check):
        super().__init__(lambda v: v is None or inner.test(v), f"None or {inner.expected}")
        self.inner = inner

    def message(self, where: str, name: str, value) -> str:
        if type(self.inner).message is not Check.message:  # one_of: its list of known names
            return self.inner.message(where, name, value)
        return super().message(where, name, value)


def optional(check: Check) -> Check:
    """None, or what `check` accepts (a field whose default None means "derived from others")."""
    return _Optional(check)


class _OneOf(Check):
    __slots__ = ("table", "what")

    def __init__(self, table, what: str):
        super().__init__(lambda v: isinstance(v, str) and v in table, f"one of the known {what}s")
        self.table, self.what = table, what

    def message(self, where: str, name: str, value) -> str:
        return f"{where}: unknown {self.what} {value!r} for {name}; known: {self.known()}"

    def known(self) -> str:
        return ", ".join(sorted(self.table))


def one_of(table: Container[str] | Iterable[str], what: str) -> Check:
    """A string among the keys of `table` (a dict or set, looked up when the check runs, so a
    table that grows, as the activations do, is followed). The error lists the known names:
    "dense: unknown activation 'tahn' for activation; known: gelu, identity, relu, ..."."""
    return _OneOf(table, what)


optional_positive_int = optional(positive_int)
"""None or an integer >= 1 (maxpooling's stride: None means the window size)."""


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) > 0 and all(map(_is_int, value))


shape_tuple = Check(
    lambda v: _is_shape(v) and all(n >= 1 for n in v), "a non-empty sequence of positive integers"
)
"""A shape: a non-empty tuple (or list) of integers >= 1, e.g. a model's input shape."""


def sample_shape(spec, shape: tuple, rank: int | tuple[int, ...], what: str) -> tuple:
    """`shape` as a tuple if it has `rank` axes (or one of the ranks given), else a ValueError
    "<spec>: expects <what>, got shape <shape>": the start of a layer's output_shape rule,
    e.g. sample_shape(spec, shape, 1, "a vector sample (n_in,)")."""
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    if len(shape) not in ranks:
        raise ValueError(f"{spec!r}: expects {what}, got shape {tuple(shape)}")
    return tuple(shape)


def image_sample(spec, shape: tuple) -> tuple:
    """`shape` if it is one image sample (channels, height, width), else a ValueError naming spec."""
    return sample_shape(spec, shape, 3, "a (channels, height, width) sample")


def sequence_sample(spec, shape: tuple) -> tuple:
    """`shape` if it is one sequence sample (T, C), else a ValueError naming spec."""
    return sample_shape(spec, shape, 2, "a sequence sample (T, C)")
