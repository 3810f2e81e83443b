"""Small attrs validators shared by the layer specs: errors name the layer, the field and the value."""

from __future__ import annotations

import numbers

import attrs


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(instance, attribute, value) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(
            f"{type(instance).__name__}: {attribute.name} must be an integer >= 1, got {value!r}"
        )


def non_negative_int(instance, attribute, value) -> None:
    if not _is_int(value) or value < 0:
        raise ValueError(
            f"{type(instance).__name__}: {attribute.name} must be an integer >= 0, got {value!r}"
        )


def optional_positive_int(instance, attribute, value) -> None:
    if value is not None:
        positive_int(instance, attribute, value)


def one_of(table, what: str):
    """Validator: the value is a key of `table` (looked up at call time, so tables can grow)."""

    def check(instance, attribute, value) -> None:
        if not isinstance(value, str) or value not in table:
            raise ValueError(
                f"{type(instance).__name__}: unknown {what} {value!r} for {attribute.name}; "
                f"known: {', '.join(sorted(table))}"
            )

    return check


def compact_repr(self) -> str:
    """`name(field=value, ...)` listing only the fields that differ from their defaults, so a spec
    prints the way it was written: conv2d(k=5, channels=6, activation='tanh')."""
    shown = []
    for field in attrs.fields(type(self)):
        value = getattr(self, field.name)
        if field.default is attrs.NOTHING or value != field.default:
            shown.append(f"{field.name}={value!r}")
    return f"{type(self).__name__}({', '.join(shown)})"


def chw_shape(spec, shape) -> tuple:
    """`shape` itself if it is one image sample (channels, height, width), else a ValueError."""
    if len(shape) != 3:
        raise ValueError(
            f"{spec!r}: expects a (channels, height, width) sample, got shape {tuple(shape)}"
        )
    return shape
