"""The built-in layers' ONNX forms, registered exactly as a plugin registers its own.

layer                       nodes written                      nodes read back
conv2d(k, c, s, p, act)     Conv(k, s, pads p) [+ act]         Conv [+ Relu|Tanh|Sigmoid]
conv2d_transpose            ConvTranspose(k, s, pads p) [+act] ConvTranspose [+ act]
dense(n, act)               Gemm(x, w (in, out), b) [+ act]    Gemm (transB: w = B.T), MatMul [+ Add]
maxpooling(k, s)            MaxPool(k, s, floor)               MaxPool (no pads, ceil_mode 0)
flatten                     Flatten(axis 1)                    Flatten(axis 1), Reshape(x, [0|-1, -1])
softmax                     Softmax(axis -1)                   Softmax on the last axis
batchnorm(m, eps)           BatchNormalization(eps, 1 - m)     inference mode, its running stats
dropout(rate)               Dropout(x, ratio) (inference: x)   Dropout, training_mode absent/false
activation(name)            Relu | Tanh | Sigmoid | Identity   the same ops on their own
residual(f, g)              f's nodes, g's, Add(f(x), g(x))    a fork joined by an Add (_load.py)
network(layers)             its layers' nodes in turn          (flattened into the outer network)
activation gelu, gelu_tanh  Mul Erf Add Div Mul | Pow Tanh ...  only in fran's own files
dense on (T, C)             MatMul(x, w), Add(b) [+ act]       only in fran's own files
layernorm(eps)              LayerNormalization(axis -1, eps)   only in fran's own files
position_embedding          Add(x, p)                          only in fran's own files
embedding(vocab, dim)       Round, Cast int64, Gather(w, ids)  only in fran's own files
attention(h, causal)        MatMul/Split/Reshape/Transpose,    only in fran's own files
                            Mul scale, [Where mask], Softmax
rnn(H), lstm(H)             Transpose, RNN | LSTM, Squeeze,    only in fran's own files
                            Transpose (LSTM gates i, o, f, c)
Identity nodes are read as nothing. ONNX's batch norm momentum weighs the old running value
(running = m_onnx running + (1 - m_onnx) batch), fran's the new one: m_onnx = 1 - m.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from fran.engine import network
from fran.layers import (
    activation,
    attention,
    batchnorm,
    conv2d,
    conv2d_transpose,
    dense,
    dropout,
    embedding,
    flatten,
    layernorm,
    lstm,
    maxpooling,
    position_embedding,
    residual,
    rnn,
    softmax,
)
from fran.onnx._errors import OnnxError
from fran.onnx._plugins import add_loader, register

ACT_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
OP_ACTS = {op: name for name, op in ACT_OPS.items()}


def _gelu(ctx, z: str) -> str:
    """z (1 + erf(z / sqrt 2)) / 2, in fran's order of operations (opset 17 has no Gelu)."""
    e = ctx.node("Erf", [ctx.node("Mul", [z, ctx.constant(0.5**0.5, "gelu_c")])])
    half = ctx.node(
        "Div", [ctx.node("Add", [e, ctx.constant(1.0, "one")]), ctx.constant(2.0, "two")]
    )
    return ctx.node("Mul", [z, half])


def _gelu_tanh(ctx, z: str) -> str:
    """z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2, in fran's order of operations."""
    cube = ctx.node("Pow", [z, ctx.constant(3.0, "three")])
    u = ctx.node("Add", [z, ctx.node("Mul", [ctx.constant(0.044715, "gelu_c"), cube])])
    t = ctx.node("Tanh", [ctx.node("Mul", [ctx.constant((2 / math.pi) ** 0.5, "gelu_k"), u])])
    one_t = ctx.node("Mul", [z, ctx.node("Add", [ctx.constant(1.0, "one"), t])])
    return ctx.node("Div", [one_t, ctx.constant(2.0, "two")])


COMPOSED = {"gelu": _gelu, "gelu_tanh": _gelu_tanh}  # activations written as several nodes


def _act(ctx, name: str, z: str) -> str:
    if name == "identity":
        return z
    if name in COMPOSED:
        return COMPOSED[name](ctx, z)
    op = ACT_OPS.get(name)
    if op is None:
        raise OnnxError(
            f"fran.onnx.export: layer {ctx.where} ({ctx.spec!r}): activation {name!r} has no ONNX "
            f"form (ONNX forms exist for identity, {', '.join([*ACT_OPS, *COMPOSED])})"
        )
    return ctx.node(op, [z])


def _fused(ctx, t: str) -> tuple[str, str]:
    """(activation name, output) of an activation node that alone follows tensor t, if any."""
    node = ctx.follow(t, OP_ACTS)
    return ("identity", t) if node is None else (OP_ACTS[node.op_type], node.output[0])


def _only(ctx, node, allowed: set) -> dict:
    a = ctx.attrs(node)
    extra = sorted(set(a) - allowed)
    if extra:
        raise ctx.fail(node, f"fran has no form for its attributes {extra}")
    return a


def _square(ctx, node, a: dict, key: str, default, what: str) -> int:
    values = a.get(key, default)
    if values is None or len(values) != 2 or values[0] != values[1]:
        raise ctx.fail(node, f"{key} {values} is not {what} (fran's are square and 2-D)")
    return int(values[0])


def _pads(ctx, node, a: dict) -> int:
    auto = a.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        raise ctx.fail(node, f"auto_pad {auto!r}: fran pads explicitly (NOTSET) or not (VALID)")
    pads = a.get("pads", [0, 0, 0, 0])
    if len(pads) != 4 or len(set(pads)) != 1 or (auto == "VALID" and pads[0] != 0):
        raise ctx.fail(node, f"pads {pads}: fran pads all four sides alike")
    return int(pads[0])


def _unit(ctx, node, a: dict, key: str) -> None:
    if any(v != 1 for v in a.get(key, [1, 1])):
        raise ctx.fail(node, f"{key} {a[key]}: fran has no dilated or grouped convolution")


def _image_input(ctx, node) -> int:
    if len(ctx.shape) != 3:
        raise ctx.fail(node, f"its input samples have shape {ctx.shape}, fran's are (C, H, W)")
    return ctx.shape[0]


def _array(ctx, node, i: int, shape: tuple | None = None, what: str = "") -> np.ndarray:
    array = ctx.const(node.input[i], node)
    if array.dtype != ctx.dtype:
        raise ctx.fail(
            node, f"input {i} ({node.input[i]!r}) is {array.dtype}, the model {ctx.dtype}"
        )
    if shape is not None and array.shape != shape:
        raise ctx.fail(
            node, f"input {i} ({node.input[i]!r}) has shape {array.shape}, {what} {shape}"
        )
    return array


def _bias(ctx, node, i: int, n: int) -> np.ndarray:
    if not ctx.has_input(node, i):
        return np.zeros(n, ctx.dtype)
    b = _array(ctx, node, i)
    if b.shape not in ((n,), (1, n)):
        raise ctx.fail(node, f"its bias has shape {b.shape}, expected ({n},)")
    return b.reshape(n)


# ---------------------------------------------------------------- conv2d


def _export_conv(op: str, spec, ctx) -> str:
    """Conv or ConvTranspose with square kernel, stride and padding, then the activation."""
    k, s, p = spec.k, spec.stride, spec.padding
    inputs = [ctx.x, ctx.param("w"), ctx.param("b")]
    z = ctx.node(op, inputs, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
    return _act(ctx, spec.activation, z)


def export_conv2d(spec, ctx) -> str:
    return _export_conv("Conv", spec, ctx)


def load_conv2d(node, ctx):
    a = _only(ctx, node, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
    C = _image_input(ctx, node)
    if a.get("group", 1) != 1:
        raise ctx.fail(node, f"group {a['group']}: fran has no grouped convolution")
    w = _array(ctx, node, 1)
    if w.ndim != 4 or w.shape[1] != C or w.shape[2] != w.shape[3]:
        raise ctx.fail(node, f"weights of shape {w.shape}: expected (O, {C}, k, k)")
    k = w.shape[2]
    if _square(ctx, node, a, "kernel_shape", [k, k], f"its weights' {k} x {k}") != k:
        raise ctx.fail(node, f"kernel_shape {a['kernel_shape']} but weights {w.shape}")
    s = _square(ctx, node, a, "strides", [1, 1], "one stride")
    _unit(ctx, node, a, "dilations")
    p = _pads(ctx, node, a)
    act, out = _fused(ctx, node.output[0])
    spec = conv2d(k=k, channels=w.shape[0], stride=s, padding=p, activation=act)
    return spec, {"w": w, "b": _bias(ctx, node, 2, w.shape[0])}, {}, out


# ---------------------------------------------------------------- conv2d_transpose


def export_conv2d_transpose(spec, ctx) -> str:
    return _export_conv("ConvTranspose", spec, ctx)


def load_conv2d_transpose(node, ctx):
    allowed = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"}
    a = _only(ctx, node, allowed | {"output_padding"})
    C = _image_input(ctx, node)
    w = _array(ctx, node, 1)
    if w.ndim != 4 or w.shape[0] != C or w.shape[2] != w.shape[3]:
        raise ctx.fail(node, f"weights of shape {w.shape}: expected ({C}, O, k, k)")
    k = w.shape[2]
    if _square(ctx, node, a, "kernel_shape", [k, k], f"its weights' {k} x {k}") != k:
        raise ctx.fail(node, f"kernel_shape {a['kernel_shape']} but weights {w.shape}")
    s = _square(ctx, node, a, "strides", [1, 1], "one stride")
    _unit(ctx, node, a, "dilations")
    if a.get("group", 1) != 1:
        raise ctx.fail(node, f"group {a['group']}: fran has no grouped convolution")
    if any(a.get("output_padding", [0, 0])):
        raise ctx.fail(node, f"output_padding {a['output_padding']}: fran's is 0")
    p = _pads(ctx, node, a)
    act, out = _fused(ctx, node.output[0])
    spec = conv2d_transpose(k=k, channels=w.shape[1], stride=s, padding=p, activation=act)
    return spec, {"w": w, "b": _bias(ctx, node, 2, w.shape[1])}, {}, out


# ---------------------------------------------------------------- dense


def export_dense(spec, ctx) -> str:
    if len(ctx.shape) == 1:
        z = ctx.node("Gemm", [ctx.x, ctx.param("w"), ctx.param("b")])
    else:  # (N, T, C): Gemm takes matrices only; MatMul broadcasts over the positions
        z = ctx.node("Add", [ctx.node("MatMul", [ctx.x, ctx.param("w")]), ctx.param("b")])
    return _act(ctx, spec.activation, z)


def _vector_input(ctx, node) -> int:
    if len(ctx.shape) != 1:
        raise ctx.fail(
            node, f"its input samples have shape {ctx.shape}; fran's dense takes vectors"
        )
    return ctx.shape[0]


def load_gemm(node, ctx):
    a = _only(ctx, node, {"alpha", "beta", "transA", "transB"})
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        raise ctx.fail(node, f"alpha/beta/transA {a}: fran's dense is x @ w + b exactly")
    n_in = _vector_input(ctx, node)
    w = _array(ctx, node, 1)
    if w.ndim != 2:
        raise ctx.fail(node, f"weights of shape {w.shape}: expected a matrix")
    if a.get("transB", 0):
        w = np.ascontiguousarray(w.T)  # torch's Linear stores (out, in)
    if w.shape[0] != n_in:
        raise ctx.fail(node, f"weights of (in, out) shape {w.shape} for inputs of {n_in}")
    act, out = _fused(ctx, node.output[0])
    return (
        dense(n_out=w.shape[1], activation=act),
        {"w": w, "b": _bias(ctx, node, 2, w.shape[1])},
        {},
        out,
    )


def load_matmul(node, ctx):
    n_in = _vector_input(ctx, node)
    w = _array(ctx, node, 1)
    if w.ndim != 2 or w.shape[0] != n_in:
        raise ctx.fail(node, f"weights of shape {w.shape}: expected ({n_in}, n_out)")
    out, b = node.output[0], np.zeros(w.shape[1], ctx.dtype)
    add = ctx.follow(out, ("Add",), when=lambda n: n.input[0] == out and ctx.is_const(n.input[1]))
    if add is not None:
        b, out = _bias(ctx, add, 1, w.shape[1]), add.output[0]
    act, out = _fused(ctx, out)
    return dense(n_out=w.shape[1], activation=act), {"w": w, "b": b}, {}, out


# ---------------------------------------------------------------- pooling, reshaping, softmax


def export_maxpooling(spec, ctx) -> str:
    return ctx.node("MaxPool", [ctx.x], kernel_shape=[spec.k, spec.k], strides=[spec.s, spec.s])


def load_maxpool(node, ctx):
    allowed = {"kernel_shape", "strides", "pads", "ceil_mode", "dilations", "auto_pad"}
    a = _only(ctx, node, allowed | {"storage_order"})
    _image_input(ctx, node)
    ctx.unused(node, 1)
    k = _square(ctx, node, a, "kernel_shape", None, "a square window")
    s = _square(ctx, node, a, "strides", [1, 1], "one stride")
    _unit(ctx, node, a, "dilations")
    if _pads(ctx, node, a) or a.get("ceil_mode", 0):
        raise ctx.fail(node, "fran's max pooling has no padding and floor mode (ceil_mode 0)")
    return maxpooling(k=k, stride=None if s == k else s), {}, {}, node.output[0]


def export_flatten(spec, ctx) -> str:
    return ctx.node("Flatten", [ctx.x], axis=1)


def load_flatten(node, ctx):
    a = _only(ctx, node, {"axis"})
    if a.get("axis", 1) != 1:
        raise ctx.fail(node, f"axis {a['axis']}: fran flattens everything but the batch axis")
    return flatten(), {}, {}, node.output[0]


def load_reshape(node, ctx):
    a = _only(ctx, node, {"allowzero"})
    target = [int(v) for v in ctx.const(node.input[1], node).ravel()]
    n = int(np.prod(ctx.shape))
    zero_is_zero = a.get("allowzero", 0) and 0 in target  # else a 0 copies the batch size
    if zero_is_zero or len(target) != 2 or target[0] not in (0, -1) or target[1] not in (-1, n):
        raise ctx.fail(
            node, f"shape {target}: fran's only reshape is flatten, [0 or -1, -1 or {n}]"
        )
    return flatten(), {}, {}, node.output[0]


def export_softmax(spec, ctx) -> str:
    return ctx.node("Softmax", [ctx.x], axis=-1)


def load_softmax(node, ctx):
    a = _only(ctx, node, {"axis"})
    if a.get("axis", -1) not in (-1, len(ctx.shape)):
        raise ctx.fail(node, f"axis {a['axis']}: fran's softmax is over the last axis")
    return softmax(), {}, {}, node.output[0]


# ---------------------------------------------------------------- batchnorm, dropout, activation


def export_batchnorm(spec, ctx) -> str:
    inputs = [ctx.x, ctx.param("gamma"), ctx.param("beta"), ctx.state("mean"), ctx.state("var")]
    return ctx.node(
        "BatchNormalization", inputs, epsilon=float(spec.eps), momentum=1.0 - spec.momentum
    )


def _float32_value(value: float) -> float:
    """The shortest decimal that a float32 attribute stands for: 1e-05, not 9.99999974e-06."""
    return float(str(np.float32(value)))


def load_batchnorm(node, ctx):
    a = _only(ctx, node, {"epsilon", "momentum", "training_mode", "spatial"})
    if a.get("training_mode", 0) or a.get("spatial", 1) != 1:
        raise ctx.fail(node, "fran reads batch norm in inference form (training_mode 0, spatial)")
    if len(ctx.shape) not in (1, 3):
        raise ctx.fail(
            node, f"its input samples have shape {ctx.shape}: fran's are (C, H, W) or (F,)"
        )
    ctx.unused(node, 1)
    C = ctx.shape[0]
    gamma, beta, mean, var = (_array(ctx, node, i, (C,), "expected") for i in range(1, 5))
    eps = _float32_value(a.get("epsilon", 1e-5))
    momentum = float(f"{1.0 - _float32_value(a.get('momentum', 0.9)):.7g}")
    try:
        spec = batchnorm(momentum=momentum, eps=eps)
    except ValueError as exc:
        raise ctx.fail(node, str(exc)) from None
    return spec, {"gamma": gamma, "beta": beta}, {"mean": mean, "var": var}, node.output[0]


def export_dropout(spec, ctx) -> str:
    return ctx.node("Dropout", [ctx.x, ctx.constant(spec.rate, "ratio")])


def load_dropout(node, ctx):
    _only(ctx, node, {"seed"})
    ctx.unused(node, 1)
    if ctx.has_input(node, 2) and bool(ctx.const(node.input[2], node)):
        raise ctx.fail(node, "training_mode is true: fran reads dropout in inference form")
    rate = 0.5
    if ctx.has_input(node, 1):
        ratio = ctx.const(node.input[1], node)
        if ratio.shape != () or ratio.dtype.kind != "f":
            raise ctx.fail(node, f"ratio {ratio!r} is not a float scalar")
        rate = _float32_value(ratio) if ratio.dtype == np.float32 else float(ratio)
    try:
        return dropout(rate), {}, {}, node.output[0]
    except ValueError as exc:
        raise ctx.fail(node, str(exc)) from None


def export_activation(spec, ctx) -> str:
    return ctx.node("Identity", [ctx.x]) if spec.name == "identity" else _act(ctx, spec.name, ctx.x)


def load_activation(node, ctx):
    _only(ctx, node, set())
    return activation(OP_ACTS[node.op_type]), {}, {}, node.output[0]


def load_identity(node, ctx):
    return None, {}, {}, node.output[0]  # no layer: the walk goes on from its output


# ---------------------------------------------------------------- sequences: (T, C) samples
# Written by fran and read back from fran's own files (the metadata's model, checked against the
# graph); the matcher does not read them in foreign files: those name the node and op it lacks.


def export_layernorm(spec, ctx) -> str:
    return ctx.node(
        "LayerNormalization",
        [ctx.x, ctx.param("w"), ctx.param("b")],
        axis=-1,
        epsilon=float(spec.eps),
    )


def export_position_embedding(spec, ctx) -> str:
    return ctx.node("Add", [ctx.x, ctx.param("p")])


def export_embedding(spec, ctx) -> str:
    # ids arrive in the model's float dtype: rounded as fran's token_ids does, then int64 rows
    ids = ctx.node("Cast", [ctx.node("Round", [ctx.x])], to=TensorProto.INT64)
    return ctx.node("Gather", [ctx.param("w"), ids], axis=0)


def _matmul_t(ctx, x: str, w: str, b: str) -> str:
    """x @ w^T + b for a torch-layout (out, in) weight, on (N, T, in) tensors."""
    return ctx.node("Add", [ctx.node("MatMul", [x, ctx.node("Transpose", [w], perm=[1, 0])]), b])


def export_attention(spec, ctx) -> str:
    # dropout is the identity at inference: the graph is attention's inference form
    T, C = ctx.shape
    h = spec.heads
    d = C // h
    qkv = _matmul_t(ctx, ctx.x, ctx.param("w_in"), ctx.param("b_in"))
    split = ctx.constant([C, C, C], "split", np.int64)
    q, k, v = ctx.node("Split", [qkv, split], outputs=3, axis=-1)
    heads = ctx.constant([0, T, h, d], "heads", np.int64)  # 0: the batch axis as it comes
    q, k, v = (ctx.node("Reshape", [z, heads]) for z in (q, k, v))
    q = ctx.node("Transpose", [q], perm=[0, 2, 1, 3])  # (N, h, T, d)
    kt = ctx.node("Transpose", [k], perm=[0, 2, 3, 1])  # (N, h, d, T)
    v = ctx.node("Transpose", [v], perm=[0, 2, 1, 3])
    s = ctx.node("Mul", [ctx.node("MatMul", [q, kt]), ctx.constant(d**-0.5, "scale")])
    if spec.causal:
        mask = ctx.constant(np.tril(np.ones((T, T), dtype=bool)), "causal", np.bool_)
        s = ctx.node("Where", [mask, s, ctx.constant(-np.inf, "minus_inf")])
    a = ctx.node("Softmax", [s], axis=-1)
    o = ctx.node("Transpose", [ctx.node("MatMul", [a, v])], perm=[0, 2, 1, 3])  # (N, T, h, d)
    o = ctx.node("Reshape", [o, ctx.constant([0, T, C], "join", np.int64)])
    return _matmul_t(ctx, o, ctx.param("w_out"), ctx.param("b_out"))


def _recurrence(spec, ctx, op: str, order) -> str:
    """ONNX's RNN/LSTM op (one layer, forward, h_0 = 0) in its time-major layout: x (N, T, C)
    is transposed to (T, N, C), the weights' gate blocks taken in ONNX's order `order` (torch's
    blocks by index) and given a direction axis; Y (T, 1, N, H) comes back as (N, T, H)."""
    H = spec.hidden
    axis0 = ctx.constant([0], "axis0", np.int64)

    def onnx_rows(w: str) -> str:
        if order is not None:  # torch's gate blocks i, f, g, o -> ONNX's i, o, f, c
            w = ctx.node("Gather", [w, ctx.constant(rows_of(order, H), "gates", np.int64)], axis=0)
        return ctx.node("Unsqueeze", [w, axis0])

    W, R = onnx_rows(ctx.param("w_ih")), onnx_rows(ctx.param("w_hh"))
    b = ctx.node("Concat", [ctx.param("b_ih"), ctx.param("b_hh")], axis=0)
    if order is not None:
        both = np.concatenate([rows_of(order, H), 4 * H + rows_of(order, H)])
        b = ctx.node("Gather", [b, ctx.constant(both, "bias_gates", np.int64)], axis=0)
    B = ctx.node("Unsqueeze", [b, axis0])
    x = ctx.node("Transpose", [ctx.x], perm=[1, 0, 2])
    y = ctx.node(op, [x, W, R, B], hidden_size=H)  # Y only: every step's h
    y = ctx.node("Squeeze", [y, ctx.constant([1], "axis1", np.int64)])  # the direction axis
    return ctx.node("Transpose", [y], perm=[1, 0, 2])


def rows_of(order, H: int) -> np.ndarray:
    return np.concatenate([np.arange(g * H, (g + 1) * H) for g in order])


def export_rnn(spec, ctx) -> str:
    return _recurrence(spec, ctx, "RNN", None)  # activations default to Tanh


LSTM_GATES = (0, 3, 1, 2)  # ONNX's i, o, f, c as torch's (and fran's) blocks i, f, g, o


def export_lstm(spec, ctx) -> str:
    return _recurrence(spec, ctx, "LSTM", LSTM_GATES)


# ---------------------------------------------------------------- blocks


def export_residual(spec, ctx) -> str:
    f = ctx.sublayers(
        spec.layers, ctx.layer_params["f"], ctx.layer_state["f"], ctx.x, ctx.shape, ctx.where + "/f"
    )
    if spec.shortcut is None:
        return ctx.node("Add", [f, ctx.x])
    g = ctx.sublayers(
        spec.shortcut,
        ctx.layer_params["g"],
        ctx.layer_state["g"],
        ctx.x,
        ctx.shape,
        ctx.where + "/g",
    )
    return ctx.node("Add", [f, g])


def export_network(spec, ctx) -> str:
    return ctx.sublayers(
        spec.layers, ctx.layer_params, ctx.layer_state, ctx.x, ctx.shape, ctx.where
    )


register(conv2d, export=export_conv2d, load=load_conv2d, ops=("Conv",))
register(
    conv2d_transpose,
    export=export_conv2d_transpose,
    load=load_conv2d_transpose,
    ops=("ConvTranspose",),
)
register(dense, export=export_dense, load=load_gemm, ops=("Gemm",))
register(maxpooling, export=export_maxpooling, load=load_maxpool, ops=("MaxPool",))
register(flatten, export=export_flatten, load=load_flatten, ops=("Flatten",))
register(softmax, export=export_softmax, load=load_softmax, ops=("Softmax",))
register(batchnorm, export=export_batchnorm, load=load_batchnorm, ops=("BatchNormalization",))
register(dropout, export=export_dropout, load=load_dropout, ops=("Dropout",))
register(activation, export=export_activation, load=load_activation, ops=tuple(OP_ACTS))
register(residual, export=export_residual)
register(network, export=export_network)
register(layernorm, export=export_layernorm)
register(position_embedding, export=export_position_embedding)
register(embedding, export=export_embedding)
register(attention, export=export_attention)
register(rnn, export=export_rnn)
register(lstm, export=export_lstm)

# the ops only fran's sequence layers write: read back from fran's own files (their metadata's
# model, re-exported and compared node for node), never matched in a foreign file
WRITTEN_ONLY = {
    "Cast", "Concat", "Div", "Erf", "Gather", "LSTM", "LayerNormalization", "Mul", "Pow", "RNN",
    "Round", "Split", "Squeeze", "Transpose", "Unsqueeze", "Where",
}  # fmt: skip


# more patterns read as the same layers: MatMul (+ Add) as other exporters write dense, a Reshape
# that flattens, and Identity nodes (read as nothing)
add_loader(dense, load_matmul, ("MatMul",))
add_loader(flatten, load_reshape, ("Reshape",))
add_loader(None, load_identity, ("Identity",))
