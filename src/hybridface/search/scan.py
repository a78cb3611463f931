"""Scan kernels: one pass over each float32 similarity block keeps the certified band.

k = 1: argmax and masked second max per probe (a compiled Numba pass per block when available,
NumPy otherwise; a one-BLAS-call path for a few probes over a small gallery); k > 1: per-identity
maxima within the band of the k-th best.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import runtime
from hybridface.search.base import SearchResult
from hybridface.search.rerank import band_tolerance, best_per_probe, hot_entries, prune_band, segment_max, top1_result
from hybridface.search.runtime import compiled, scratch


# ---- Fused k = 1 scan: one compiled pass over each BLAS similarity block, no second product.
def _top2(block, best, second, arg):  # pragma: no cover - runs compiled (coverage cannot see it)
    """Per column of a ``(rows, cols)`` block: largest value, its first row, second largest.

    An exact tie with the largest counts as the second largest, so tied columns are crowded.
    Written as a row-major double loop with branch-free updates so LLVM vectorises it across the
    contiguous columns.
    """
    r, c = block.shape
    for j in range(c):
        best[j] = -np.inf
        second[j] = -np.inf
        arg[j] = 0
    for i in range(r):
        for j in range(c):
            v = block[i, j]
            b = best[j]
            second[j] = max(second[j], min(v, b))
            if v > b:
                best[j] = v
                arg[j] = i


def top2_kernel():
    """The compiled :func:`_top2`, or ``None`` (Numba missing or ``runtime.FUSED_TOP1`` false)."""
    return compiled(_top2) if runtime.FUSED_TOP1 else None


def band_top1_fused(p: np.ndarray, vectors: np.ndarray, rc: int, tol: float, top2):
    """k = 1 band rows ``(probe, row, float32 score)`` of ``(nb, d)`` probes over ``vectors``.

    Same contract as :func:`~hybridface.search.scan.band_top1`: every row whose float32
    similarity is within ``tol`` of its probe's best is returned (see the module docstring);
    ``rc`` rows per ``(rc, nb)`` block.
    """
    nb, n_rows = p.shape[0], vectors.shape[0]
    rc = max(1, min(rc, n_rows))
    buf = scratch(rc * nb).reshape(rc, nb)  # reused: no page faults
    theta = np.full(nb, -np.inf, np.float32)
    best = np.empty(nb, np.float32)
    second = np.empty(nb, np.float32)
    arg = np.empty(nb, np.int32)  # row within the block
    pt = p.T
    prs, rows, scs = [], [], []
    held = 0
    for s in range(0, n_rows, rc):
        vc = vectors[s : s + rc]
        sims = buf[: vc.shape[0]]
        np.matmul(vc, pt, out=sims)
        top2(sims, best, second, arg)
        np.maximum(theta, best, out=theta)
        limit = theta - tol
        hot = np.flatnonzero(best >= limit)
        if len(hot) == 0:
            continue
        crowded = second[hot] >= limit[hot]
        single = hot[~crowded]
        prs.append(single)
        rows.append(arg[single] + s)
        scs.append(best[single])
        held += len(single)
        if crowded.any():
            pr, r = hot_entries(sims, hot[crowded], limit, 1)
            prs.append(pr)
            rows.append(r + s)
            scs.append(sims[r, pr])
            held += len(pr)
        if held > 4 * nb:
            pr, r, sc = prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)
            prs, rows, scs, held = [pr], [r], [sc], len(pr)
    if not prs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)


# ---- k = 1 fast path of the exhaustive kernel: band rows of the best template per probe.
def band_top1(p: np.ndarray, vectors: np.ndarray, rc: int, tol: float):
    """k = 1: rows within ``tol`` of the best row (the best row's identity is the best identity).

    Two passes, the second tiny. (1) Template-major ``(rows, probes)`` products chunk by chunk,
    reduced at once to the maximum of every ``REVISIT_ROWS``-row slice per probe (an element-wise
    maximum of contiguous rows, the cheapest reduction NumPy has); a running best per probe keeps
    only the (slice, probe) pairs that reach its band. (2) Those few slices (about one per probe)
    are multiplied again with just their probes and the rows within the band are kept.
    With Numba installed, scans of at least ``runtime.FUSED_MIN_PRODUCTS`` products delegate to
    :func:`~hybridface.search.scan.band_top1_fused` (one compiled pass per block, same band).

    The second product may round differently from the first; ``tol`` (four times the float32
    error bound of one dot product) covers both: the exact best row's slice reaches the band in
    pass 1 and the row itself in pass 2, so the float64 re-ranking always sees it.
    """
    top2 = top2_kernel() if p.shape[0] * vectors.shape[0] >= runtime.FUSED_MIN_PRODUCTS else None
    if top2 is not None:
        return band_top1_fused(p, vectors, rc, tol, top2)
    nb, n_rows = p.shape[0], vectors.shape[0]
    sub = max(1, min(runtime.REVISIT_ROWS, rc))
    rc = max(sub, rc // sub * sub)
    theta = np.full(nb, -np.inf, np.float32)
    buf = scratch(min(rc, n_rows) * nb).reshape(min(rc, n_rows), nb)  # reused: no page faults
    slice_max = np.empty((rc // sub, nb), np.float32)
    pt = p.T
    keys, prs, scs = [], [], []  # (slice, probe) pairs within the running band, slice maxima
    held = 0
    for s in range(0, n_rows, rc):
        vc = vectors[s : s + rc]
        r = vc.shape[0]
        sims = buf[:r]
        np.matmul(vc, pt, out=sims)
        q, full = r // sub, r // sub * sub
        cm = slice_max[: q + (full < r)]
        if q:
            np.max(sims[:full].reshape(q, sub, nb), axis=1, out=cm[:q])
        if full < r:
            np.max(sims[full:], axis=0, out=cm[q])
        np.maximum(theta, cm.max(axis=0), out=theta)
        j, pr = np.nonzero(cm >= theta - tol)
        keys.append(j + s // sub)
        prs.append(pr)
        scs.append(cm[j, pr])
        held += len(pr)
        if held > 4 * nb:
            pr, key, sc = prune_band(np.concatenate(prs), np.concatenate(keys), np.concatenate(scs), theta, tol)
            keys, prs, scs, held = [key], [pr], [sc], len(pr)
    pr, key, _ = prune_band(np.concatenate(prs), np.concatenate(keys), np.concatenate(scs), theta, tol)
    limit = theta - tol
    out_pr, out_rows, out_sc = [], [], []
    cut = np.flatnonzero(np.diff(key)) + 1  # keys ascend (chunk by chunk, slice-major in each)
    for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(key)]])):
        s = int(key[a]) * sub
        hot = pr[a:b]
        block = vectors[s : s + sub] @ p[hot].T  # (rows, hot probes)
        r, c = np.nonzero(block >= limit[hot])
        out_pr.append(hot[c])
        out_rows.append(r + s)
        out_sc.append(block[r, c])
    if not out_pr:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(out_pr), np.concatenate(out_rows), np.concatenate(out_sc)


def band_top1_few(p: np.ndarray, vectors: np.ndarray, tol: float):
    """k = 1 for a handful of probes: template-major products (a GEMV for one probe) streamed
    through an L2-sized ``(rows, nb)`` block, so a single probe reads the gallery once at memory
    speed; same argmax / masked-second-max band logic as :func:`band_top1`."""
    nb = p.shape[0]
    rc = max(runtime.MIN_CHUNK_ROWS, runtime.FEW_BLOCK_BYTES // (4 * nb))
    theta = np.full(nb, -np.inf, np.float32)
    buf = np.empty((min(rc, vectors.shape[0]), nb), np.float32)
    every = np.arange(nb)
    pt = p[0] if nb == 1 else p.T
    prs, rows, scs = [], [], []
    for s in range(0, vectors.shape[0], rc):
        vc = vectors[s : s + rc]
        sims = buf[: vc.shape[0]]
        np.matmul(vc, pt, out=sims[:, 0] if nb == 1 else sims)
        arg = sims.argmax(axis=0)
        top = sims[arg, every]
        np.maximum(theta, top, out=theta)
        limit = theta - tol
        hot = np.flatnonzero(top >= limit)
        if len(hot) == 0:
            continue
        prs.append(hot)
        rows.append(arg[hot] + s)
        scs.append(top[hot])
        if vc.shape[0] > 1:
            sims[arg, every] = -np.inf
            crowded = hot[(sims.max(axis=0) >= limit)[hot]]
            if len(crowded):
                pr, r = hot_entries(sims, crowded, limit, 1)
                prs.append(pr)
                rows.append(r + s)
                scs.append(sims[r, pr])
    return prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)


# ---- General k > 1 path of the exhaustive kernel: per-identity maxima within the band of the k-th
# best.
def band_topk(p: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, k: int, rc: int, tol: float):
    """k > 1: per-identity maxima (contiguous rows, :func:`segment_max`) within ``tol`` of the k-th best.

    A dense ``(nb, k)`` array of the k best scores so far gives the threshold; entries that reach
    it are collected sparsely (few after the first chunks) and pruned against the final threshold.
    """
    nb = p.shape[0]
    best = np.full((nb, k), -np.inf, np.float32)  # k best identity scores so far (unordered)
    theta = np.full(nb, -np.inf, np.float32)
    prs, ids, scs = [], [], []
    held = 0
    carry: np.ndarray | None = None
    buf = np.empty((min(rc, vectors.shape[0]), nb), np.float32)
    pt = p.T
    s, n_rows = 0, vectors.shape[0]
    while s < n_rows:
        e = min(s + rc, n_rows)
        snapped = int(offsets[np.searchsorted(offsets, e, side="right") - 1])
        if s < snapped < e:
            e = snapped  # end on an identity boundary when one is in reach
        sims = buf[: e - s]
        np.matmul(vectors[s:e], pt, out=sims)
        first = int(np.searchsorted(offsets, s, side="right")) - 1
        last = int(np.searchsorted(offsets, e, side="left"))  # identities first..last-1 touched
        starts = np.maximum(offsets[first:last], s)
        ends = np.minimum(offsets[first + 1 : last + 1], e)
        per_id = segment_max(sims, starts - s, ends - starts)  # (m_c, nb); -inf if no rows
        if carry is not None:
            np.maximum(per_id[0], carry, out=per_id[0])
            carry = None
        if e < offsets[last]:  # the last identity continues in the next chunk
            carry = per_id[-1].copy()
            per_id = per_id[:-1]
        if per_id.shape[0]:
            hot = np.flatnonzero(per_id.max(axis=0) >= theta - tol)
            if len(hot):
                merged = np.concatenate([best[hot], per_id[:, hot].T], axis=1)
                best[hot] = np.partition(merged, merged.shape[1] - k, axis=1)[:, -k:]
                theta[hot] = best[hot].min(axis=1)
                pr, i = hot_entries(per_id, hot, theta - tol, 1)
                keep = per_id[i, pr] > -np.inf
                pr, i = pr[keep], i[keep]
                prs.append(pr)
                ids.append(i + first)
                scs.append(per_id[i, pr])
                held += len(pr)
                if held > 4 * k * nb:
                    pr, i, sc = prune_band(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), theta, tol)
                    prs, ids, scs, held = [pr], [i], [sc], len(pr)
        s = e
    if not prs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return prune_band(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), theta, tol)


# ---- Direct k = 1 path for a few probes over a small gallery: one BLAS call, no chunking.
def fits_direct(n_probes: int, n_rows: int, k: int) -> bool:
    """Whether :func:`direct_top1` applies: ``k == 1``, a few probes, a small similarity block."""
    return k == 1 and 0 < n_probes <= runtime.FEW_PROBES and 0 < n_probes * n_rows * 4 <= runtime.DIRECT_BYTES


def direct_top1(
    probes: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, template_ids: np.ndarray
) -> SearchResult:
    """Exact k = 1 over every template for ``(n, d)`` unit probes (see the module docstring)."""
    n, n_rows = probes.shape[0], vectors.shape[0]
    tol = band_tolerance(probes.shape[1])
    if n == 1:
        sims = np.matmul(vectors, probes[0], out=scratch(n_rows, "direct"))
        rows = np.flatnonzero(sims >= sims.max() - tol)
        pr = np.zeros(len(rows), np.int64)
    else:
        sims = vectors @ probes.T  # (rows, n)
        rows, pr = np.nonzero(sims >= sims.max(axis=0) - tol)
    dots = np.einsum("ij,ij->i", vectors[rows], probes[pr], dtype=np.float64)
    if n == 1:
        best = np.array([rows[int(np.argmax(dots))]])  # first maximum = lowest row
        top = dots.max(keepdims=True)
    else:
        _, best, top = best_per_probe(pr, rows, dots)
    return top1_result(best, top, offsets, template_ids, n * n_rows + len(rows))
