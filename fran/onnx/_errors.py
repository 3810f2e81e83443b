"""The one error fran.onnx raises for what it cannot write or read."""

from __future__ import annotations


class OnnxError(ValueError):
    """A model fran cannot express in ONNX, or an ONNX file fran cannot (or will not) read: an
    operator or attribute without a fran layer, a hostile or corrupted file. The message names
    the function, the file, the node or layer, and what is missing."""
