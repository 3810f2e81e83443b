"""Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2015) for 3x3 stride-1 correlations.

Each 2x2 block of outputs is computed from the 4x4 input tile d under it and the 3x3 kernel g as
    Y = A^T [(G g G^T) * (B^T d B)] A        (* elementwise; A, B, G the constant matrices below)
16 products per tile and channel pair instead of im2col's 36, the same sums in exact arithmetic.
Tiles start every 2 pixels, so neighbours overlap by 2. With d flattened row-major to 16 numbers,
B^T d B is kron(B^T, B^T) @ d, so all transforms are small dense products over many tiles at once:
    V = BB @ D (16, C, T)    U = GG @ g (16, O, C)    M[e] = U[e] @ V[e] (16 batched products)
    Y = AA @ M (4, O, T)     for the T = nb * ceil(OH/2) * ceil(OW/2) tiles of nb images,
a block of about TILES tiles at a time (so that D, M and Y stay in cache; only V is kept).
The vjp runs the same chain backwards (the adjoints of these linear maps), block by block:
    dM = AA^T @ dY,  dU[e] = dM[e] @ V[e]^T,  dg = GG^T @ dU,  dV[e] = U[e]^T @ dM[e],
    dD = BB^T @ dV, whose overlapping tiles are added back into the padded input.
The layouts in and out are _conv's: z (O, N*OH*OW), dw like w, dx channels first (C, N, H, W).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fran import parallel

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
BB, GG, AA = np.kron(_BT, _BT), np.kron(_G, _G), np.kron(_AT, _AT)  # (16, 16), (16, 9), (4, 16)


ENABLED = True  # the switch: False leaves every convolution to _conv's other kernels
MIN_CHANNELS = 32  # fewer input channels: the transforms cost more than the products saved
MIN_OUTPUTS = 64  # output pixels per image, at least
MAX_COVER = 1.1  # the tiles' 2x2 blocks may cover at most 10% more than the output (odd sizes)


def pays(C: int, O: int, OH: int, OW: int) -> bool:
    """Whether F(2x2, 3x3) beats _conv's kernels for a 3x3 stride-1 layer C -> O with OH x OW
    outputs (timings: benchmarks/README.md); O < C stays on the output side, which is faster."""
    cover = 4 * (-(-OH // 2)) * (-(-OW // 2))  # pixels computed, an odd side's extra one included
    return (
        ENABLED
        and MIN_CHANNELS <= C <= O
        and OH * OW >= MIN_OUTPUTS
        and cover <= MAX_COVER * OH * OW
    )


TILES = 512  # tiles per block of images: each block's products and transforms stay in cache


class Wino(NamedTuple):
    """What the vjp needs from the forward: the transformed input and kernel."""

    V: list  # per block of images, (16, C, tiles) input tiles, transformed
    U: np.ndarray  # (16, O, C) kernel, transformed
    x_shape: tuple  # (N, C, H, W)
    padding: int
    out: tuple  # (OH, OW)
    tiles: tuple  # (th, tw), tiles per image along each side
    block: int  # images per block


def lay_out(x: np.ndarray, w: np.ndarray, padding: int) -> Wino:
    """x (N, C, H, W) as transformed 4x4 tiles for w (O, C, 3, 3) zero-padded by `padding`."""
    N, C, H, W = x.shape
    O, p = w.shape[0], padding
    OH, OW = H + 2 * p - 2, W + 2 * p - 2
    th, tw = -(-OH // 2), -(-OW // 2)
    xp = np.zeros((C, N, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)  # tiles cover the output evenly
    xp[:, :, p : p + H, p : p + W] = x.transpose(1, 0, 2, 3)
    s = xp.strides
    bb = BB.astype(x.dtype)
    block = max(1, TILES // (th * tw))

    def transformed(n):
        nb = min(block, N - n)
        tiles = np.lib.stride_tricks.as_strided(  # (4, 4, C, nb, th, tw): a view, tiles 2 apart
            xp[:, n:],
            (4, 4, C, nb, th, tw),
            (s[2], s[3], s[0], s[1], 2 * s[2], 2 * s[3]),
            writeable=False,
        )
        return (bb @ tiles.reshape(16, -1)).reshape(16, C, -1)  # the one copy, then B^T d B

    V = parallel.for_pieces(transformed, range(0, N, block))  # blocks on threads in whole batches
    U = (GG.astype(w.dtype) @ w.transpose(2, 3, 0, 1).reshape(9, O * C)).reshape(16, O, C)
    return Wino(V, U, x.shape, p, (OH, OW), (th, tw), block)


def _parities(OH: int, OW: int):
    """(a, b, rows, cols): output pixels (2i + a, 2j + b) come from tile (i, j)'s block entry (a, b)."""
    return [(a, b, (OH - a + 1) // 2, (OW - b + 1) // 2) for a in range(2) for b in range(2)]


def correlate(t: Wino, b=None) -> np.ndarray:
    """z (O, N*OH*OW), as _conv.correlate."""
    N = t.x_shape[0]
    O = t.U.shape[1]
    (OH, OW), (th, tw) = t.out, t.tiles
    z = np.empty((O, N, OH, OW), dtype=np.result_type(t.U, t.V[0]))
    aa = AA.astype(z.dtype)
    bias = 0 if b is None else b.reshape(O, 1, 1, 1)

    def block(b):  # writes only its own images of z
        n, V = b * t.block, t.V[b]
        M = np.matmul(t.U, V)  # (16, O, tiles)
        Y = (aa @ M.reshape(16, -1)).reshape(2, 2, O, -1, th, tw)
        for a, c, rows, cols in _parities(OH, OW):
            zb = z[:, n : n + Y.shape[3], a::2, c::2]
            np.add(Y[a, c, :, :, :rows, :cols], bias, out=zb)

    parallel.for_pieces(block, range(len(t.V)))
    return z.reshape(O, -1)


def correlate_vjp(t: Wino, dz: np.ndarray, input_grad: bool = True):
    """(dw, dx) for dz (O, N*OH*OW), as _conv.correlate_vjp: dw (O, C, 3, 3), dx (C, N, H, W)."""
    N, C, H, W = t.x_shape
    O = t.U.shape[1]
    (OH, OW), (th, tw), p = t.out, t.tiles, t.padding
    dz4 = dz.reshape(O, N, OH, OW)
    aat, bbt, ut = AA.T.astype(dz.dtype), BB.T.astype(dz.dtype), t.U.transpose(0, 2, 1)
    dxp = np.zeros((C, N, 2 * th + 2, 2 * tw + 2), dtype=dz.dtype) if input_grad else None

    def block(b):  # returns its share of dU; writes only its own images of dxp
        n, V = b * t.block, t.V[b]
        nb = V.shape[2] // (th * tw)
        dY = np.zeros((2, 2, O, nb, th, tw), dtype=dz.dtype)  # dz as 2x2 output blocks
        for a, c, rows, cols in _parities(OH, OW):
            dY[a, c, :, :, :rows, :cols] = dz4[:, n : n + nb, a::2, c::2]
        dM = (aat @ dY.reshape(4, -1)).reshape(16, O, -1)
        dU = np.matmul(dM, V.transpose(0, 2, 1))
        if input_grad:
            dV = np.matmul(ut, dM)  # (16, C, tiles)
            dD = (bbt @ dV.reshape(16, -1)).reshape(4, 4, C, nb, th, tw)
            for i in range(4):  # entry (i, j) of every tile at once: a contiguous source
                for j in range(4):
                    dxp[:, n : n + nb, i : i + 2 * th : 2, j : j + 2 * tw : 2] += dD[i, j]
        return dU

    dU = np.zeros((16, O, C), dtype=dz.dtype)
    for share in parallel.for_pieces(block, range(len(t.V))):  # summed in block order
        dU += share
    dw = (GG.T.astype(dU.dtype) @ dU.reshape(16, -1)).reshape(3, 3, O, C).transpose(2, 3, 0, 1)
    dw = np.ascontiguousarray(dw)
    if not input_grad:
        return dw, None
    return dw, dxp[:, :, p : p + H, p : p + W]
