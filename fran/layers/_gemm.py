"""The matrix products behind conv2d, conv2d_transpose and dense.

matmul_wide(a, b) = a @ b and matmul_wide_t(a, b) = a @ b.T for a wide b (K, n), cut into
column blocks for two reasons:
- cache: single-threaded OpenBLAS runs a short, very wide product faster in blocks of columns
  whose operand columns fit in about 512 kB, while the small matrix (M x K) is small;
- cores: while a batch is computed whole on the calling thread (networks with batch norm or
  dropout: fran.parallel.whole_batch_region), a large product is cut into PIECES blocks that
  fran's threads compute at once.
The blocks depend on the shapes only, never on the thread count, and matmul_wide_t adds the
blocks' products in block order, so results do not change with the number of threads.
matmul_rows(a, b) = a @ b cut into blocks of a's rows (dense layers: rows are samples).
Past timings of these choices: benchmarks/README.md, "Kernel notes".
"""

from __future__ import annotations

import numpy as np

from fran import parallel
from fran.kernels import conv as conv_kernels

GEMM_BLOCK_BYTES = 1 << 19
SMALL_MATRIX = 4096  # M * K at most this: compute in column blocks
PIECES = 4  # blocks of a large product in a whole-batch region (fixed: results keep their bits)
PIECE_MACS = 1 << 22  # multiply-adds per block at least: smaller ones are not worth a hand-off


def _block_columns(m: int, k: int, itemsize: int) -> int | None:
    """Columns per block for an (m, k) x (k, n) product, or None to do it whole: the power of two
    (at least 256) whose m + k rows fit GEMM_BLOCK_BYTES, when m * k <= SMALL_MATRIX."""
    if m * k > SMALL_MATRIX:
        return None
    fit = GEMM_BLOCK_BYTES // ((m + k) * itemsize)
    return max(256, 1 << (fit.bit_length() - 1)) if fit else 256


def _piece(n: int, macs_per_column: int) -> int | None:
    """Columns per block for threads in a whole-batch region, or None to keep the product whole."""
    if not parallel.in_whole_batch_region():
        return None
    pieces = min(PIECES, n * macs_per_column // PIECE_MACS)
    return -(-n // pieces) if pieces > 1 else None


def _blocks(m: int, k: int, n: int, itemsize: int) -> int | None:
    return _block_columns(m, k, itemsize) or _piece(n, m * k)


def _summed(parts: list) -> np.ndarray:
    """The blocks' partial products added in block order, whichever thread computed them."""
    out = parts[0]
    for part in parts[1:]:
        out += part
    return out


def matmul_wide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, N), one block of columns of b at a time when it pays (see above)."""
    m, n = a.shape[0], b.shape[1]
    block = _blocks(m, a.shape[1], n, b.itemsize)
    if block is None or n <= block:
        return a @ b
    out = np.empty((m, n), dtype=np.result_type(a, b))

    def product(i):
        np.matmul(a, b[:, i : i + block], out=out[:, i : i + block])

    parallel.for_pieces(product, range(0, n, block))
    return out


def matmul_wide_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, N) @ b.T for b (K, N): for a small result, the sum over blocks of a_blk @ b_blk.T."""
    n = a.shape[1]
    block = _blocks(a.shape[0], b.shape[0], n, b.itemsize)
    if block is None or n <= block:
        return a @ b.T
    return _summed(
        parallel.for_pieces(
            lambda i: a[:, i : i + block] @ b[:, i : i + block].T, range(0, n, block)
        )
    )


def matmul_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (N, K) @ b (K, M), blocks of a's rows on fran's threads in a whole-batch region."""
    n = a.shape[0]
    block = _piece(n, a.shape[1] * b.shape[1])
    if block is None or n <= block:
        return a @ b
    out = np.empty((n, b.shape[1]), dtype=np.result_type(a, b))

    def product(i):
        np.matmul(a[i : i + block], b, out=out[i : i + block])

    parallel.for_pieces(product, range(0, n, block))
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a.T @ b for a (N, K), b (N, M): in a whole-batch region, the sum over blocks of rows."""
    n = a.shape[0]
    block = _piece(n, a.shape[1] * b.shape[1])
    if block is None or n <= block:
        return a.T @ b
    return _summed(
        parallel.for_pieces(lambda i: a[i : i + block].T @ b[i : i + block], range(0, n, block))
    )


# Implicit-GEMM convolutions (fran.kernels.conv): the im2col products above without the im2col
# matrix, walking the column blocks matmul_wide/matmul_wide_t would (so bitwise the same), in
# one compiled call per run of blocks. In a whole-batch region the blocks are cut into PIECES
# fixed runs for fran's threads; the bits do not depend on the runs either.


def implicit_blocks(m: int, k: int, n: int, itemsize: int) -> tuple:
    """(columns per block, number of blocks) of the reference's product (m, k) x (k, n)."""
    block = min(n, _block_columns(m, k, itemsize) or n)
    return block, -(-n // block)


def implicit_fits(m: int, k: int, n: int, itemsize: int) -> bool:
    """Whether the reference multiplies (m, k) x (k, n) in column blocks of sgemm/dgemm calls
    alone: a small matrix, and no call with one row or column (NumPy takes gemv for those)."""
    block, _ = implicit_blocks(m, k, n, itemsize)
    return m * k <= SMALL_MATRIX and m > 1 and k > 1 and n > 1 and n % block != 1


def _runs(blocks: int, macs_per_block: int) -> list:
    """Fixed runs [b0, b1) of the blocks: PIECES of them in a whole-batch region, else one."""
    pieces = min(PIECES, blocks * macs_per_block // PIECE_MACS, blocks)
    if not parallel.in_whole_batch_region() or pieces < 2:
        return [(0, blocks)]
    cut = -(-blocks // pieces)
    return [(b, min(blocks, b + cut)) for b in range(0, blocks, cut)]


def implicit_correlate(x, w2, k: int, s: int, p: int, out: tuple):
    """w2 (O, C*k*k) @ im2col(x, k, s, p): z (O, N*OH*OW)."""
    O, K = w2.shape
    n = x.shape[0] * out[0] * out[1]
    block, blocks = implicit_blocks(O, K, n, x.itemsize)
    z = np.empty((O, n), dtype=x.dtype)

    def run(r):
        buf = np.empty((K, block), dtype=x.dtype)
        conv_kernels.correlate(x, w2, k, s, p, out, block, r[0], r[1], buf, z)

    parallel.for_pieces(run, _runs(blocks, block * O * K))
    return z


def implicit_weight_grad(x, dz, k: int, s: int, p: int, out: tuple, K: int):
    """dz (O, N*OH*OW) @ im2col(x, k, s, p).T: dw (O, C*k*k), the blocks added in block order."""
    O, n = dz.shape
    block, blocks = implicit_blocks(O, K, n, x.itemsize)
    parts = np.empty((blocks, O, K), dtype=x.dtype)

    def run(r):
        buf = np.empty((K, block), dtype=x.dtype)
        conv_kernels.weight_grad_parts(x, dz, k, s, p, out, block, *r, buf, parts[r[0] : r[1]])

    parallel.for_pieces(run, _runs(blocks, block * O * K))
    dw = np.empty((O, K), dtype=x.dtype)
    conv_kernels.sum_in_order(parts, dw)
    return dw


def implicit_input_grad_stride1(w2, dz, k: int, size: tuple, N: int):
    """conv_input_grad_stride1 of fran.layers._conv for a padded input size (Hp, Wp): the full
    (C, N*Hp*Wp), or None where its largest shift passes a block (the reference then)."""
    O, K = w2.shape
    Hp, Wp = size
    n = N * Hp * Wp
    block, blocks = implicit_blocks(K, O, n, dz.itemsize)
    if not implicit_fits(K, O, n, dz.itemsize) or ((k - 1) * (Wp + 1) > block and blocks > 1):
        return None
    full = np.empty((K // (k * k), n), dtype=dz.dtype)

    def run(r):
        bufs = np.empty((3, max(K, O), block), dtype=dz.dtype)
        conv_kernels.input_grad_stride1(w2, dz, k, size, block, *r, bufs, full)

    parallel.for_pieces(run, _runs(blocks, block * O * K))
    return full
