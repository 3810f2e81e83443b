"""The avgpooling plugin's ONNX mapping: AveragePool(k, s) both ways, floor mode, no padding.

Kept apart from fran_avgpool.py so that the layer itself needs no onnx; its distribution declares

    [project.entry-points."fran.onnx"]
    avgpooling = "fran_avgpool_onnx"

and fran.onnx imports this module the first time it exports an avgpooling layer or meets an
AveragePool node. (Importing it imports onnx, through fran.onnx.)
"""

from __future__ import annotations

from fran_avgpool import avgpooling

import fran.onnx


def export(spec: avgpooling, ctx) -> str:
    k, s = spec.k, spec.s
    return ctx.node("AveragePool", [ctx.x], kernel_shape=[k, k], strides=[s, s])


def load(node, ctx):
    a = ctx.attrs(node)
    extra = sorted(set(a) - {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad"})
    if extra:
        raise ctx.fail(node, f"avgpooling has no form for its attributes {extra}")
    k, s = a["kernel_shape"], a.get("strides", [1, 1])
    if len(k) != 2 or k[0] != k[1] or len(s) != 2 or s[0] != s[1]:
        raise ctx.fail(node, f"kernel_shape {k} and strides {s}: avgpooling's are square")
    if any(a.get("pads", [0])) or a.get("ceil_mode", 0):
        raise ctx.fail(node, "avgpooling has no padding and floor mode (ceil_mode 0)")
    if len(ctx.shape) != 3:
        raise ctx.fail(node, f"its input samples have shape {ctx.shape}, not (C, H, W)")
    spec = avgpooling(k=int(k[0]), stride=None if s[0] == k[0] else int(s[0]))
    return spec, {}, {}, node.output[0]


fran.onnx.register(avgpooling, export=export, load=load, ops=("AveragePool",))
