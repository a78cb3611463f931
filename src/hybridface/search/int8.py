"""int8 template storage for few-probe k = 1 exhaustive search, with exact answers.

A single probe is memory-bound: it streams every float32 template (240 B at 60-D). Stored as
per-dimension scalar-quantised int8 codes (``x_i ~ scale_i * codes_i``, 60 B) plus a certified
error bound per row (4 B), a probe reads about a quarter of that. A compiled Numba kernel computes
approximate scores ``a_r = sum_i codes[r, i] * (p_i * scale_i)`` and keeps, in the same pass, the
*certified band*: every row whose upper bound reaches the largest lower bound.

Why it is exact. For a probe ``p`` and row ``x_r`` with reconstruction ``xhat_r``,
``|x_r . p - xhat_r . p| <= ||x_r - xhat_r|| ||p|| <= err_r ||p||`` (Cauchy-Schwarz; ``err_r`` is
the residual norm computed in float64 and rounded up). The kernel's own float32 rounding (probe
scaling, products, a sum in any order) is at most ``(d + 2) 2**-24 sum_i |xhat_ri p_i|``, which
``eps`` covers with a factor 2. So ``a_r - e_r <= x_r . p <= a_r + e_r`` with
``e_r = err_r ||p|| + eps``, and every row attaining the best exact score has
``a_r + e_r >= max_r' (a_r' - e_r')``: the band contains the exact best. Those rows are re-scored
with the float64 per-row dot of :func:`~hybridface.search.rerank.exact_top1` (ties to the lowest
row, hence the lowest identity), so answers are bit-identical to float32 storage.

Memory: the float32 matrix is kept for the re-scoring, so int8 storage adds 64 B per 60-D
template (+27 %) while cutting the bytes a probe streams by 73 %. Numba is required: without it
:func:`int8_kernel` raises `ConfigError`. Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError
from hybridface.search.base import SearchResult
from hybridface.search.rerank import best_per_probe, top1_result
from hybridface.search.runtime import compiled


#: Rows per kernel block (dimension-major inside a block).
BLOCK = 256
#: Initial band entries per probe held by the kernel (grown on demand).
BAND_CAPACITY = 1024


@dataclass(frozen=True)
class Int8Templates:
    """Per-dimension int8 codes of ``(N, d)`` templates and a certified error bound per row.

    Stored blocked for the kernel: ``blocks (ceil(N / BLOCK), d, BLOCK) int8`` (row ``r`` is
    ``blocks[r // BLOCK, :, r % BLOCK]``; padding rows are 0) and ``bounds`` (padded, 0 after N).
    ``scale (d,) float32`` = ``max_r |x_ri| / 127`` (1 for an all-zero column); ``err`` >=
    ``||x_r - scale * codes_r||_2`` (float64, rounded up); ``norm`` >= ``max_r ||scale * codes_r||``.
    """

    blocks: np.ndarray
    scale: np.ndarray
    bounds: np.ndarray
    n: int
    norm: float

    @property
    def codes(self) -> np.ndarray:
        """``(N, d)`` int8 codes (a copy, row-major)."""
        return self.blocks.transpose(0, 2, 1).reshape(-1, self.blocks.shape[1])[: self.n].copy()

    @property
    def err(self) -> np.ndarray:
        """``(N,)`` float32 upper bounds on each row's reconstruction error."""
        return self.bounds[: self.n]

    @property
    def nbytes(self) -> int:
        return self.blocks.nbytes + self.scale.nbytes + self.bounds.nbytes


def quantize_int8(vectors: np.ndarray, *, chunk: int = 65536) -> Int8Templates:
    """Scalar-quantise ``(N, d)`` float32 rows to int8 with a true per-row error bound."""
    x = np.asarray(vectors, np.float32)
    if x.ndim != 2:
        raise ConfigError(f"quantize_int8 needs an (N, d) array, got shape {x.shape}")
    n, d = x.shape
    chunk = max(BLOCK, chunk // BLOCK * BLOCK)
    top = np.zeros(d, np.float32)
    for a in range(0, n, chunk):  # chunk by chunk: no temporary the size of the matrix
        xc = x[a : a + chunk]
        if not np.isfinite(xc).all():
            raise ConfigError("quantize_int8: the templates contain NaN or infinite values")
        np.maximum(top, np.abs(xc).max(axis=0), out=top)
    scale = np.where(top > 0, top / np.float32(127), np.float32(1)).astype(np.float32)
    nblk = -(-n // BLOCK)
    blocks = np.zeros((nblk, d, BLOCK), np.int8)
    err = np.zeros(nblk * BLOCK, np.float32)
    norm = 0.0
    s64 = scale.astype(np.float64)
    for a in range(0, n, chunk):
        xc = x[a : a + chunk]
        c = np.clip(np.rint(xc / scale), -127, 127).astype(np.int8)
        pad = np.zeros((-(-len(c) // BLOCK) * BLOCK, d), np.int8)
        pad[: len(c)] = c
        blocks[a // BLOCK : a // BLOCK + len(pad) // BLOCK] = pad.reshape(-1, BLOCK, d).transpose(0, 2, 1)
        xhat = c * s64  # float64, exact products of a small int and a float32
        res = np.sqrt(np.square(xc - xhat).sum(axis=1))
        # float64 rounding of the residual norm is ~1e-16 relative: inflate, then round up to float32
        e = (res * (1 + 1e-12) + 1e-300).astype(np.float32)
        err[a : a + len(c)] = np.nextafter(e, np.float32(np.inf))
        norm = max(norm, float(np.sqrt(np.square(xhat).sum(axis=1)).max()))
    return Int8Templates(blocks=blocks, scale=scale, bounds=err, n=n, norm=norm * (1 + 1e-9))


def _scan(blocks, err, n, q, e_scale, es32, eps, cap):  # pragma: no cover - runs compiled
    """One pass over the blocked int8 rows for ``nb`` probes (``q = p * scale`` in float32).

    ``blocks (nblk, d, B)``: B rows per block, dimension-major, so the inner loop runs over B
    independent float32 accumulators (vectorised, no horizontal sums). A block whose largest
    float32 upper bound (without ``eps``) is below the running lower bound less ``eps + 1e-5`` (the
    1e-5 covers the float32 rounding of that test) cannot hold band rows nor raise the bound, and is
    skipped;
    the others are tested row by row in float64. Returns ``(rows, hi, count, lo)``: per probe the
    first ``count[j]`` entries of ``rows[j]`` / ``hi[j]`` are rows whose upper bound ``a + e`` reached
    the running maximum lower bound when seen; ``lo[j]`` is the final one (caller keeps ``hi >= lo``).
    """
    nblk, d, bsz = blocks.shape
    nb = q.shape[0]
    lo = np.full(nb, -np.inf)
    lo32 = np.full(nb, -np.inf, np.float32)
    cnt = np.zeros(nb, np.int64)
    rows = np.empty((nb, cap), np.int64)
    hi = np.empty((nb, cap), np.float64)
    acc = np.empty(bsz, np.float32)
    for k in range(nblk):
        base = k * bsz
        for j in range(nb):
            for b in range(bsz):
                acc[b] = 0.0
            for i in range(d):
                qi = q[j, i]
                for b in range(bsz):
                    acc[b] += np.float32(blocks[k, i, b]) * qi
            top = np.float32(-np.inf)
            for b in range(bsz):
                top = max(top, acc[b] + err[base + b] * es32[j])
            if top < lo32[j]:
                continue
            for b in range(min(bsz, n - base)):
                a = np.float64(acc[b])
                e = err[base + b] * e_scale[j] + eps
                if a - e > lo[j]:
                    lo[j] = a - e
                    lo32[j] = np.float32(lo[j] - eps - 1e-5)
                if a + e < lo[j]:
                    continue
                if cnt[j] == cap:  # compact every probe's list, grow if still half full
                    most = 0
                    for jj in range(nb):
                        c = 0
                        for t in range(cnt[jj]):
                            if hi[jj, t] >= lo[jj]:
                                rows[jj, c] = rows[jj, t]
                                hi[jj, c] = hi[jj, t]
                                c += 1
                        cnt[jj] = c
                        most = max(most, c)
                    if 2 * most > cap:
                        rows2 = np.empty((nb, 2 * cap), np.int64)
                        hi2 = np.empty((nb, 2 * cap), np.float64)
                        rows2[:, :cap] = rows
                        hi2[:, :cap] = hi
                        rows, hi, cap = rows2, hi2, 2 * cap
                c = cnt[j]
                rows[j, c] = base + b
                hi[j, c] = a + e
                cnt[j] = c + 1
    return rows, hi, cnt, lo


def int8_kernel():
    """The compiled :func:`_scan` (nogil, fast-math reassociation only); `ConfigError` without Numba."""
    kernel = compiled(_scan, fastmath={"reassoc", "contract", "nnan", "nsz"})
    if kernel is None:
        raise ConfigError("storage='int8' needs the numba package: pip install numba, or use storage='float32'")
    return kernel


def load_int8_kernel() -> None:
    """Load (or compile) the kernel's one signature now, not inside the first timed search;
    `ConfigError` without Numba."""
    one = np.zeros(1, np.float64)
    int8_kernel()(np.zeros((1, 1, BLOCK), np.int8), np.zeros(BLOCK, np.float32), 1,
                  np.zeros((1, 1), np.float32), one, one.astype(np.float32), 0.0, 1)


def int8_band(probes: np.ndarray, q8: Int8Templates) -> tuple[np.ndarray, np.ndarray]:
    """``(probe, row)`` pairs of the certified band of ``(nb, d)`` probes (see the module docstring)."""
    p64 = probes.astype(np.float64)
    q = (p64 * q8.scale).astype(np.float32)
    e_scale = np.sqrt(np.square(p64).sum(axis=1)) * (1 + 1e-9)
    d = probes.shape[1]
    # kernel rounding (<= (d+2) 2^-24 sum|xhat_i p_i| <= (d+2) 2^-24 norm ||p||), doubled, + float64 slack
    eps = 2.0 * (d + 2) * 2.0**-24 * q8.norm * float(e_scale.max(initial=1.0)) + 1e-9
    es32 = (e_scale * (1 + 1e-6)).astype(np.float32)
    rows, hi, cnt, lo = int8_kernel()(q8.blocks, q8.bounds, q8.n, q, e_scale, es32, eps, BAND_CAPACITY)
    prs, out = [], []
    for j in range(probes.shape[0]):
        r = rows[j, : cnt[j]][hi[j, : cnt[j]] >= lo[j]]
        prs.append(np.full(len(r), j, np.int64))
        out.append(r)
    return np.concatenate(prs), np.concatenate(out)


def int8_top1(
    probes: np.ndarray, q8: Int8Templates, vectors: np.ndarray, offsets: np.ndarray, template_ids: np.ndarray
) -> SearchResult:
    """Exact k = 1 for a few ``(n, d)`` unit probes: int8 band, then float64 re-scoring."""
    n = probes.shape[0]
    pr, rows = int8_band(probes, q8)
    dots = np.einsum("ij,ij->i", vectors[rows], probes[pr], dtype=np.float64)
    _, best, top = best_per_probe(pr, rows, dots)
    return top1_result(best, top, offsets, template_ids, n * vectors.shape[0] + len(rows))
