"""k = 1 fast path of the exhaustive kernel: band rows of the best template per probe.

For ``k == 1`` the best template's identity *is* the best identity, so the scan tracks rows
directly (an argmax plus a masked second max per chunk) instead of per-identity maxima.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import hot_entries, prune_band
from hybridface.search.fused import band_top1_fused, top2_kernel
from hybridface.search.threads import scratch


def band_top1(p: np.ndarray, vectors: np.ndarray, rc: int, tol: float):
    """k = 1: rows within ``tol`` of the best row (the best row's identity is the best identity).

    Two passes, the second tiny. (1) Template-major ``(rows, probes)`` products chunk by chunk,
    reduced at once to the maximum of every ``REVISIT_ROWS``-row slice per probe (an element-wise
    maximum of contiguous rows, the cheapest reduction NumPy has); a running best per probe keeps
    only the (slice, probe) pairs that reach its band. (2) Those few slices (about one per probe)
    are multiplied again with just their probes and the rows within the band are kept.
    With Numba installed, scans of at least ``tuning.FUSED_MIN_PRODUCTS`` products delegate to
    :func:`~hybridface.search.fused.band_top1_fused` (one compiled pass per block, same band).

    The second product may round differently from the first; ``tol`` (four times the float32
    error bound of one dot product) covers both: the exact best row's slice reaches the band in
    pass 1 and the row itself in pass 2, so the float64 re-ranking always sees it.
    """
    top2 = top2_kernel() if p.shape[0] * vectors.shape[0] >= tuning.FUSED_MIN_PRODUCTS else None
    if top2 is not None:
        return band_top1_fused(p, vectors, rc, tol, top2)
    nb, n_rows = p.shape[0], vectors.shape[0]
    sub = max(1, min(tuning.REVISIT_ROWS, rc))
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
    rc = max(tuning.MIN_CHUNK_ROWS, tuning.FEW_BLOCK_BYTES // (4 * nb))
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
