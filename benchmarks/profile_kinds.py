"""Where a fran epoch's time goes: cProfile's own time (tottime) of every function, in four classes.

- products: C functions named like a product (matmul, dot, einsum, tensordot, inner, vdot), and
  the own time of the fran functions whose work is a product: cProfile does not see ufuncs (the
  `@` operator and np.matmul are ufuncs), so a product's time is the own time of the Python
  function that calls it; those are PRODUCT_FUNCS (matmul_wide, matmul_wide_t, correlate, ...,
  dense's vjp and pullback).
- copies: C functions and ndarray methods that move memory (reshape of a non-contiguous view,
  copy, ascontiguousarray, pad, concatenate, empty, zeros, take, transpose, astype, ...), NumPy's
  Python helpers for them (np.pad, the stride tricks) and fran's layout functions (COPY_FUNCS:
  im2col, padded_rows, in_corner, shifted_spread, ...).
- element-wise: ufunc methods (reduce, accumulate, at), ndarray reductions (sum, mean, max, ...),
  NumPy's Python reductions (_methods.py, fromnumeric.py), and the own time of the fran functions
  made of ufunc arithmetic: activations, batch norm, pooling, dropout, softmax, the losses, and
  ELEMENTWISE_FUNCS (shifted_sum, col2im, conv_input_grad_stride1).
- Python overhead: everything else: fran's own Python lines (engine, train, parallel, tree,
  the optimizer's bookkeeping and its small per-parameter updates), attrs, the standard library.

The classes are a heuristic: a function's own time also holds the interpreter's work for its
lines, and a ufunc called from an "overhead" function counts as overhead. So that an activation
that is a bare ufunc (np.tanh) is not charged to the layer calling it, `visible_activations`
wraps those in a named Python function (`activation_f`, `activation_vjp`) for the profile. The
profile runs on one thread (FRAN_NUM_THREADS=1, BLAS held to one thread). cProfile sees one
thread per profiler, and batch-norm networks run their lockstep pieces on threads of their own
even then, so `profile` gives every thread started during fn a profiler of its own and adds
their stats (the threads' waits for each other, lock acquires and the pool's queue, are
then idle time counted beside the work: they are left out). No torch here.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import sys
import threading
import types
from pathlib import PurePath

from fran.layers import activations

CLASSES = ("products", "copies", "element-wise", "Python overhead")

PRODUCT_WORDS = ("matmul", "dot", "einsum", "tensordot", "inner", "vdot")
COPY_WORDS = (
    "reshape", "copy", "ascontiguousarray", "asarray", "array", "pad", "concatenate", "stack",
    "empty", "zeros", "ones", "full", "take", "transpose", "astype", "ravel", "flatten", "put",
    "repeat", "tile", "swapaxes", "moveaxis", "squeeze", "frombuffer", "copyto", "_wrapit",
)  # fmt: skip
ELEMENTWISE_WORDS = (
    "sum", "mean", "max", "min", "argmax", "argmin", "clip", "any", "all", "exp", "log", "sqrt",
    "tanh", "maximum", "minimum", "fill", "var", "std", "prod", "cumsum", "where", "_wrapreduction",
)  # fmt: skip

# fran functions, by (module file stem, function name); a file stem alone means all its functions
PRODUCT_FUNCS = {
    ("_gemm", None),  # matmul_wide, matmul_wide_t, matmul_rows, matmul_tn and their blocks
    ("_winograd", None),  # the batched products and the transforms (small products as well)
    ("_conv", "correlate"),
    ("_conv", "correlate_vjp"),
    ("_conv", "correlate_input_grad"),
    ("_conv", "<lambda>"),  # correlate_vjp's plain a @ b.T
    ("conv", None),  # fran.kernels.conv: the implicit GEMM, im2col blocks made and multiplied
    ("dense", "vjp"),  # x @ w, then the bias add in place
    ("dense", "pullback"),  # x.T @ dz and dz @ w.T
    ("dense", "apply"),
}
COPY_FUNCS = {
    ("_conv", "im2col"),
    ("_conv", "windows"),
    ("_conv", "padded_rows"),
    ("_conv", "in_corner"),
    ("_conv", "shifted_spread"),
    ("_conv", "channels_first"),
    ("_conv", "batch_first"),
    ("_conv", "zeros_in_layout_of"),
    ("_conv", "in_layout_of"),
    ("_conv", "lay_out"),
    ("flatten", None),
}
ELEMENTWISE_FUNCS = {
    ("profile_kinds", "activation_f"),
    ("profile_kinds", "activation_vjp"),
    ("conv2d_transpose", "_forward"),  # z + b
    ("_conv", "shifted_sum"),
    ("_conv", "col2im"),
    ("_conv", "conv_input_grad_stride1"),
    ("activations", None),
    ("activation", None),
    ("batchnorm", None),
    ("_pool", None),
    ("pool", None),  # fran.kernels.pool
    ("epilogue", None),  # fran.kernels.epilogue
    ("maxpooling", None),
    ("dropout", None),
    ("softmax", None),
    ("losses", None),
}
NUMPY_COPY_FILES = ("_arraypad_impl", "_stride_tricks_impl", "shape_base", "_shape_base_impl")
NUMPY_ELEMENTWISE_FILES = ("_methods", "fromnumeric")


def c_name(name: str) -> tuple[str, str]:
    """(owner, function) of cProfile's name for a C function: "<method 'reshape' of
    'numpy.ndarray' objects>" -> ("numpy.ndarray", "reshape"); "<built-in method numpy.empty>"
    -> ("numpy", "empty")."""
    if name.startswith("<method '"):
        method, _, rest = name[len("<method '") :].partition("'")
        return rest.partition("'")[2].partition("'")[0], method
    if name.startswith("<built-in method "):
        owner, _, fn = name[len("<built-in method ") :].rstrip(">").rpartition(".")
        return owner, fn
    return "", name


def _in(table: set, stem: str, name: str) -> bool:
    return (stem, name) in table or (stem, None) in table


def classify(key: tuple[str, int, str]) -> str:
    """The class of a pstats key (filename, line, function name)."""
    filename, _, name = key
    if filename == "~":  # a C function or method
        owner, fn = c_name(name)
        if not owner.startswith("numpy"):
            return "Python overhead"  # builtins, locks, ...
        if owner == "numpy.ufunc":
            return "element-wise"
        if any(w in fn for w in PRODUCT_WORDS):  # also c_einsum, ...
            return "products"
        if fn in COPY_WORDS:
            return "copies"
        if fn in ELEMENTWISE_WORDS:
            return "element-wise"
        return "Python overhead"
    path = PurePath(filename)
    stem = path.stem
    if "numpy" in path.parts:
        if stem in NUMPY_COPY_FILES or name in COPY_WORDS:
            return "copies"
        if stem in NUMPY_ELEMENTWISE_FILES or name in ELEMENTWISE_WORDS:
            return "element-wise"
        return "Python overhead"
    if "fran" in path.parts or stem == "profile_kinds":
        if _in(PRODUCT_FUNCS, stem, name):
            return "products"
        if _in(COPY_FUNCS, stem, name):
            return "copies"
        if _in(ELEMENTWISE_FUNCS, stem, name):
            return "element-wise"
    return "Python overhead"


def by_class(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per class, in CLASSES order."""
    out = dict.fromkeys(CLASSES, 0.0)
    for key, (_, _, tottime, _, _) in stats.stats.items():
        out[classify(key)] += tottime
    return out


def short_name(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    path = PurePath(filename)
    where = "/".join(path.parts[-2:]) if "fran" in path.parts else path.name
    return f"{where}:{line}({name})"


def top(stats: pstats.Stats, n: int = 15) -> list[tuple[str, str, int, float]]:
    """The n functions with the most own time: (name, class, calls, seconds)."""
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]
    return [(short_name(k), classify(k), v[1], v[2]) for k, v in rows]


def _visible(fn, name: str):
    """fn itself if it is a Python function (cProfile sees it), else fn in a Python function."""
    if isinstance(fn, types.FunctionType):
        return fn

    def activation_f(z):
        return fn(z)

    def activation_vjp(z, y, dy):
        return fn(z, y, dy)

    return activation_f if name == "f" else activation_vjp


@contextlib.contextmanager
def visible_activations():
    """fran's activations table with every bare ufunc wrapped (see the module docstring)."""
    saved = dict(activations.ACTIVATIONS)
    for key, act in saved.items():
        activations.ACTIVATIONS[key] = activations.Activation(
            _visible(act.f, "f"), _visible(act.vjp, "vjp")
        )
    try:
        yield
    finally:
        activations.ACTIVATIONS.clear()
        activations.ACTIVATIONS.update(saved)


def profile(fn) -> pstats.Stats:
    """cProfile fn() on this thread and on each thread it starts, the activations visible."""
    from fran import parallel

    profilers, lock = [cProfile.Profile()], threading.Lock()

    def in_new_thread(*_):  # threading.setprofile's hook: swap itself for a profiler
        sys.setprofile(None)
        own = cProfile.Profile()
        with lock:
            profilers.append(own)
        own.enable()

    parallel.end_lockstep_threads()  # its threads would predate the hook
    threading.setprofile(in_new_thread)
    with visible_activations():
        profilers[0].enable()
        try:
            fn()
        finally:
            profilers[0].disable()
            threading.setprofile(None)
            parallel.end_lockstep_threads()  # the threads end, so their profilers hold all
    stats = pstats.Stats(profilers[0])
    for own in profilers[1:]:
        stats.add(own)
    if len(profilers) > 1:
        stats.stats = {f: v for f, v in stats.stats.items() if f[2] not in _WAITS}
        stats.total_tt = sum(v[2] for v in stats.stats.values())
    return stats


_WAITS = (
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'get' of '_queue.SimpleQueue' objects>",
)


def markdown(title: str, stats: pstats.Stats, wall: float, n_top: int = 15) -> str:
    """A Markdown section: the four classes (seconds, %) and the top functions by own time."""
    classes = by_class(stats)
    total = sum(classes.values()) or 1.0
    lines = [
        f"#### {title}",
        "",
        f"Profiled epoch {wall:.2f} s wall (cProfile's own overhead included), "
        f"{total:.2f} s own time in total.",
        "",
        "| class | seconds | % |",
        "|---|---|---|",
        *(f"| {c} | {s:.3f} | {100 * s / total:.1f} |" for c, s in classes.items()),
        "",
        f"| top {n_top} by own time | class | calls | seconds |",
        "|---|---|---|---|",
        *(
            f"| `{name}` | {cls} | {calls} | {secs:.3f} |"
            for name, cls, calls, secs in top(stats, n_top)
        ),
    ]
    return "\n".join(lines)
