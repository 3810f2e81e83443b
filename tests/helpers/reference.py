"""Slow, obvious loops for the image layers: an oracle that needs neither PyTorch nor fran.

Each function is the textbook definition, written one output (or one input) pixel at a time, with
its backward pass derived by hand from the same loop, so a consistently wrong kernel (a flipped
filter, say, in both a layer's forward and its vjp) still disagrees with these. Float64 only.

conv2d:            z[n,o,r,q] = b[o] + sum_{c,i,j} w[o,c,i,j] xpad[n,c, s*r+i, s*q+j]
conv2d_transpose:  full[n,o, s*h+i, s*v+j] += x[n,c,h,v] w[c,o,i,j];  z = crop_p(full) + b[o]
maxpooling:        y[n,c,r,q] = max_{i,j} x[n,c, s*r+i, s*q+j], the gradient to the first
                   row-major argmax, overlapping windows adding up
"""

from __future__ import annotations

import numpy as np


def _pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def conv2d(x, w, b, stride, padding):
    """Forward: (N, C, H, W), (O, C, k, k), (O,) -> z (N, O, OH, OW)."""
    N, _, H, W = x.shape
    O, _, k, _ = w.shape
    xp = _pad(x, padding)
    OH = (H + 2 * padding - k) // stride + 1
    OW = (W + 2 * padding - k) // stride + 1
    z = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for r in range(OH):
                for q in range(OW):
                    window = xp[n, :, r * stride : r * stride + k, q * stride : q * stride + k]
                    z[n, o, r, q] = b[o] + np.sum(w[o] * window)
    return z


def conv2d_backward(x, w, dz, stride, padding):
    """(dx, dw, db) of <dz, conv2d(x, w, b)>, by running conv2d's loop backwards."""
    N, O, OH, OW = dz.shape
    k = w.shape[2]
    xp = _pad(x, padding)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(N):
        for o in range(O):
            for r in range(OH):
                for q in range(OW):
                    rows = slice(r * stride, r * stride + k)
                    cols = slice(q * stride, q * stride + k)
                    dw[o] += dz[n, o, r, q] * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += dz[n, o, r, q] * w[o]
    H, W = x.shape[2:]
    dx = dxp[:, :, padding : padding + H, padding : padding + W]
    return dx, dw, dz.sum(axis=(0, 2, 3))


def conv2d_transpose(x, w, b, stride, padding):
    """Forward: (N, C, H, W), (C, O, k, k), (O,) -> z (N, O, (H-1)s - 2p + k, ...)."""
    N, C, H, W = x.shape
    _, O, k, _ = w.shape
    full = np.zeros((N, O, (H - 1) * stride + k, (W - 1) * stride + k))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for v in range(W):
                    rows = slice(h * stride, h * stride + k)
                    cols = slice(v * stride, v * stride + k)
                    full[n, :, rows, cols] += x[n, c, h, v] * w[c]
    OH, OW = full.shape[2] - 2 * padding, full.shape[3] - 2 * padding
    return full[:, :, padding : padding + OH, padding : padding + OW] + b.reshape(1, O, 1, 1)


def conv2d_transpose_backward(x, w, dz, stride, padding):
    """(dx, dw, db) of <dz, conv2d_transpose(x, w, b)>, the forward loop run backwards."""
    N, C, H, W = x.shape
    _, O, k, _ = w.shape
    dfull = np.zeros((N, O, (H - 1) * stride + k, (W - 1) * stride + k))
    dfull[:, :, padding : padding + dz.shape[2], padding : padding + dz.shape[3]] = dz
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for v in range(W):
                    rows = slice(h * stride, h * stride + k)
                    cols = slice(v * stride, v * stride + k)
                    dx[n, c, h, v] = np.sum(dfull[n, :, rows, cols] * w[c])
                    dw[c] += x[n, c, h, v] * dfull[n, :, rows, cols]
    return dx, dw, dz.sum(axis=(0, 2, 3))


def maxpooling(x, k, stride, dy=None):
    """(y, dx): every window's maximum and, for dy, the gradient routed to its first argmax."""
    N, C, H, W = x.shape
    OH, OW = (H - k) // stride + 1, (W - k) // stride + 1
    y, dx = np.zeros((N, C, OH, OW)), np.zeros(x.shape)
    for n, c, r, q in np.ndindex(N, C, OH, OW):
        window = x[n, c, r * stride : r * stride + k, q * stride : q * stride + k]
        i, j = divmod(int(np.argmax(window)), k)  # the first maximum in row-major order
        y[n, c, r, q] = window[i, j]
        if dy is not None:
            dx[n, c, r * stride + i, q * stride + j] += dy[n, c, r, q]
    return y, dx
