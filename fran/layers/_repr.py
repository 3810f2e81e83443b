"""How layer specs print: only the fields that differ from their defaults."""

from __future__ import annotations

import attrs


def compact_repr(self) -> str:
    """`name(field=value, ...)` listing only the fields that differ from their defaults, so a spec
    prints the way it was written: conv2d(k=5, channels=6, activation='tanh')."""
    shown = []
    for field in attrs.fields(type(self)):
        value = getattr(self, field.name)
        if field.default is attrs.NOTHING or value != field.default:
            shown.append(f"{field.name}={value!r}")
    return f"{type(self).__name__}({', '.join(shown)})"
