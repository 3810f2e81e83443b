"""fran.validate: each check accepts what it says and refuses the rest, as an attrs field validator
(naming the spec and the field) and as a plain check (naming the function and the argument)."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from fran import validate

# (check, accepted, refused): the edges by hand
CASES = {
    "positive_int": (validate.positive_int, [1, 7, np.int64(3)], [0, -1, 1.0, True, None, "2"]),
    "non_negative_int": (validate.non_negative_int, [0, 5, np.int32(0)], [-1, 0.0, False]),
    "number": (validate.number, [0, -2.5, np.float32(1)], [math.inf, math.nan, True, "1", None]),
    "positive": (validate.positive, [1e-12, 3], [0, -1e-12, math.inf, np.bool_(True)]),
    "non_negative": (validate.non_negative, [0, 0.0, 2], [-1e-300, math.nan]),
    "boolean": (validate.boolean, [True, False], [0, 1, np.bool_(True), None]),
    "[0, 1)": (validate.in_range(0, 1, closed="left"), [0, 0.5, 0.999], [1, -0.1, math.nan]),
    "(0, 1]": (validate.in_range(0, 1, closed="right"), [1, 1e-9], [0, 1.5]),
    "[0, 1]": (validate.in_range(0, 1), [0, 1], [-1e-9, 1 + 1e-9]),
    "(0, 1)": (validate.in_range(0, 1, closed="neither"), [0.5], [0, 1]),
    "optional": (validate.optional_positive_int, [None, 1], [0, False]),
    "one_of": (validate.one_of({"relu": 1, "tanh": 2}, "activation"), ["relu"], ["Relu", 1, None]),
    "shape_tuple": (validate.shape_tuple, [(1,), [3, 28, 28]], [(), (0, 2), (2.0,), "12", 3]),
}


@pytest.mark.parametrize("name", CASES)
def test_each_check_accepts_and_refuses_by_hand(name):
    check, accepted, refused = CASES[name]
    for value in accepted:
        assert check.test(value), value
        assert check.check("f", "x", value) is value
    for value in refused:
        assert not check.test(value), value
        with pytest.raises(ValueError, match=r"^f: "):
            check.check("f", "x", value)


def test_a_plain_check_names_the_function_the_argument_what_and_what_came():
    with pytest.raises(ValueError) as info:
        validate.in_range(0, 1, closed="left").check("adam", "b1", 1.0)
    assert str(info.value) == "adam: b1 must be a number in [0, 1), got 1.0"


@attrs.frozen
class pool:
    k: int = attrs.field(validator=validate.positive_int)
    stride: int | None = attrs.field(default=None, validator=validate.optional_positive_int)
    act: str = attrs.field(default="relu", validator=validate.one_of({"relu", "tanh"}, "act"))
    weight_init: str | None = attrs.field(
        default=None, validator=validate.optional(validate.one_of({"he", "torch"}, "scheme"))
    )


def test_as_attrs_validators_the_messages_name_the_spec_and_the_field():
    assert pool(3, 2) == pool(k=3, stride=2)
    cases = {
        "pool: k must be an integer >= 1, got 0": dict(k=0),
        "pool: stride must be None or an integer >= 1, got 0": dict(k=2, stride=0),
        "pool: unknown act 'gelu' for act; known: relu, tanh": dict(k=2, act="gelu"),
        "pool: unknown scheme 'x' for weight_init; known: he, torch": dict(k=2, weight_init="x"),
    }
    for message, args in cases.items():
        with pytest.raises(ValueError) as info:
            pool(**args)
        assert str(info.value) == message


def test_one_of_follows_a_table_that_grows():
    table = {"relu": 1}
    check = validate.one_of(table, "activation")
    assert not check.test("swish")
    table["swish"] = 2
    assert check.test("swish")


def test_in_range_refuses_an_unknown_closed():
    with pytest.raises(ValueError, match="in_range: closed must be one of"):
        validate.in_range(0, 1, closed="open")


def test_a_check_of_your_own():
    odd = validate.Check(lambda v: isinstance(v, int) and v % 2 == 1, "an odd integer")
    assert odd.check("f", "n", 3) == 3
    with pytest.raises(ValueError, match="f: n must be an odd integer, got 4"):
        odd.check("f", "n", 4)


def test_sample_shapes_name_the_spec_and_the_shape():
    spec = pool(2)
    assert validate.image_sample(spec, [1, 5, 5]) == (1, 5, 5)
    assert validate.sequence_sample(spec, (7, 4)) == (7, 4)
    assert validate.sample_shape(spec, (3,), (1, 3), "a (C, H, W) or (F,) sample") == (3,)
    with pytest.raises(ValueError) as info:
        validate.image_sample(spec, (5, 5))
    assert str(info.value) == (
        "pool(k=2, stride=None, act='relu', weight_init=None): expects a (channels, height, "
        "width) sample, got shape (5, 5)"
    )
    with pytest.raises(ValueError, match=r"expects a sequence sample \(T, C\), got shape \(7,\)"):
        validate.sequence_sample(spec, (7,))
