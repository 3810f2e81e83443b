"""MkDocs hook: a code fence's test words (`python continuation fixture:small_mnist`) are for
pytest-markdown-docs only; the site sees the language alone (`python`), which it highlights."""

from __future__ import annotations

import re

OPENING = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]+)[ \t]+[^{\s].*$", re.M
)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return OPENING.sub(r"\g<indent>\g<fence>\g<lang>", markdown)
