"""ONNX export and import: fran models that travel to ONNX Runtime, Netron and PyTorch, and back.

    fran.onnx.export(model, "model.onnx")      # any network of built-in layers (and mapped plugins)
    model = fran.onnx.load("model.onnx")       # fran's own files, and PyTorch's torch.onnx.export

This package is the only place fran imports `onnx` (the `fran[onnx]` extra); `import fran` never
loads it. Opset: files are written with OPSET = 17 (see _export.py for why) and read from opset
13 (Softmax on one axis, Dropout's ratio as an input) to the newest the installed onnx knows.

A plugin layer maps itself with `fran.onnx.register(spec_cls, export=..., load=..., ops=...)`,
or by an entry point in the group ``fran.onnx`` named like its layer (see _plugins.py).
"""

try:
    import onnx  # noqa: F401
except ImportError as exc:  # one clear line instead of a traceback from deep inside
    raise ImportError(
        f"fran.onnx needs the onnx package ({exc}); install it with pip install 'fran[onnx]' "
        f"(from a checkout: pip install '.[onnx]')"
    ) from exc

from fran.onnx._errors import OnnxError  # noqa: E402
from fran.onnx._export import OPSET, export, to_model_proto
from fran.onnx._load import MAX_FILE_BYTES, MAX_NESTING, MAX_NODES, MAX_TENSOR_ELEMENTS, load
from fran.onnx._plugins import ExportContext, LoadContext, register

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "MAX_NODES",
    "MAX_TENSOR_ELEMENTS",
    "OPSET",
    "ExportContext",
    "LoadContext",
    "OnnxError",
    "export",
    "load",
    "register",
    "to_model_proto",
]
