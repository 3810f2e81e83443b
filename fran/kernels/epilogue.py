"""What follows a layer's product: z = p + b (a bias per row of a conv's (O, N*OH*OW) result, or per
column of a dense (N, n_out) one), y = act(z); and relu's gradient dz = dy [z > 0].

bias_act returns (z, y) for the layer's vjp, which calls act.vjp(z, y, dy). For relu the twin never
writes z back: [z > 0] = [y > 0] for y = max(z, 0), so it returns (y, y) and saves a pass.
The twins compute each element as the references do (p + b rounded to z's dtype, then NumPy's
maximum: z > 0 or NaN keeps z, else +0.0; dy * 1 or dy * 0), so the results are bitwise equal,
and laid out alike, strides included (relu_grad's dz in np.empty_like(dy) on both backends).
Other activations (tanh, sigmoid, plugins') add the bias in place and apply the table's f.
"""

from __future__ import annotations

import numpy as np

from fran import kernels

FLOATS = (np.float32, np.float64)


def bias_act(p: np.ndarray, b: np.ndarray | None, activation: str, axis: int = 0):
    """(z, y): z = p + b along `axis` of the 2-D p (p itself is overwritten), y = act(z)."""
    if activation == "relu" and b is not None and kernels.compiled() and _fits(p, b):
        y = np.empty_like(p)
        (_bias_relu_rows if axis == 0 else _bias_relu_cols)(p, b, y)
        return y, y
    return bias_act_reference(p, b, activation, axis)


def bias_act_reference(p, b, activation, axis=0):
    from fran.layers.activations import ACTIVATIONS  # here: that table calls relu_grad below

    if b is not None:
        p += b.reshape(-1, 1) if axis == 0 else b
    return p, ACTIVATIONS[activation].f(p)


def relu_grad(z: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dz = dy [z > 0], laid out like dy."""
    if kernels.compiled() and z.dtype == dy.dtype and dy.dtype in FLOATS:
        flat = _flat(z, dy)
        if flat is not None:
            dz = np.empty_like(dy)
            _relu_grad_flat(*flat, dz.ravel(order="K"))
            return dz
    return relu_grad_reference(z, dy)


def add_relu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y = relu(a + b) in one pass (a residual block's sum and the relu after it), laid out like
    a + b; its gradient is relu_grad(y, dy) ([y > 0] = [a + b > 0]), the same dz to both terms."""
    if kernels.compiled() and a.dtype == b.dtype and a.dtype in FLOATS:
        flat = _flat(a, b)
        if flat is not None:
            y = np.empty_like(a)
            _add_relu_flat(*flat, y.ravel(order="K"))
            return y
    return add_relu_reference(a, b)


def add_relu_reference(a, b):
    return np.maximum(a + b, 0)


def relu_grad_reference(z, dy):
    return np.multiply(dy, z > 0, out=np.empty_like(dy))  # dy's layout, strides too, as the twin's


def _fits(p, b) -> bool:
    return (
        p.ndim == 2
        and p.flags.c_contiguous
        and p.dtype in FLOATS
        and b.ndim == 1
        and b.dtype == p.dtype
    )


def _flat(*arrays):
    """1-D views of arrays of one shape laid out alike in one dense block, or None."""
    a0 = arrays[0]
    if any(a.shape != a0.shape or a.strides != a0.strides for a in arrays):
        return None
    flat = [a.ravel(order="K") for a in arrays]
    if a0.size and not np.may_share_memory(flat[0], a0):  # ravel had to copy: not one block
        return None
    return flat


@kernels.jit
def _bias_relu_rows(p, b, y):
    M, L = p.shape
    for m in range(M):
        for t in range(L):
            y[m, t] = p[m, t] + b[m]  # stored first: rounded to y's dtype, as NumPy's z += b
            v = y[m, t]
            if not (v > 0 or v != v):  # as np.maximum(v, 0): NaN stays, -0.0 becomes 0.0
                y[m, t] = 0


@kernels.jit
def _bias_relu_cols(p, b, y):
    M, L = p.shape
    for m in range(M):
        for t in range(L):
            y[m, t] = p[m, t] + b[t]
            v = y[m, t]
            if not (v > 0 or v != v):  # as np.maximum(v, 0): NaN stays, -0.0 becomes 0.0
                y[m, t] = 0


@kernels.jit
def _relu_grad_flat(z, dy, dz):
    for t in range(dy.size):
        dz[t] = dy[t] * (1 if z[t] > 0 else 0)


@kernels.jit
def _add_relu_flat(a, b, y):
    for t in range(y.size):
        y[t] = a[t] + b[t]  # stored first: rounded to y's dtype, as NumPy's a + b
        v = y[t]
        if not (v > 0 or v != v):  # as np.maximum(v, 0): NaN stays, -0.0 becomes 0.0
            y[t] = 0
