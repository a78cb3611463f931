"""k = 1 fast path of the exhaustive kernel: band rows of the best template per probe.

For ``k == 1`` the best template's identity *is* the best identity, so the scan tracks rows
directly (an argmax plus a masked second max per chunk) instead of per-identity maxima.
"""

from __future__ import annotations

import numpy as np

from hybridface.search import tuning
from hybridface.search.band import hot_entries, prune_band


def band_top1(p: np.ndarray, vectors: np.ndarray, rc: int, tol: float):
    """k = 1: rows within ``tol`` of the best row (the best row's identity is the best identity).

    Per chunk: one ``argmax`` and one ``max`` over the block with the argmax masked out (both
    vectorised row reductions over an in-cache block); only the rare probes whose second-best row
    is also in the band are compared element-wise. No full compare pass over the block.
    """
    nb = p.shape[0]
    theta = np.full(nb, -np.inf, np.float32)
    buf = np.empty((nb, min(rc, vectors.shape[0])), np.float32)
    every = np.arange(nb)
    prs, rows, scs = [], [], []
    held = 0
    for s in range(0, vectors.shape[0], rc):
        vc = vectors[s : s + rc]
        sims = buf[:, : vc.shape[0]]
        np.matmul(p, vc.T, out=sims)
        arg = sims.argmax(axis=1)
        top = sims[every, arg]
        np.maximum(theta, top, out=theta)
        limit = theta - tol
        hot = np.flatnonzero(top >= limit)  # only these probes can contribute rows
        if len(hot) == 0:
            continue
        prs.append(hot)
        rows.append(arg[hot] + s)
        scs.append(top[hot])
        held += len(hot)
        if vc.shape[0] > 1:
            sims[every, arg] = -np.inf  # the argmax entries are recorded; look for a second one
            crowded = hot[sims[hot].max(axis=1) >= limit[hot]] if 8 * len(hot) < nb else \
                hot[(sims.max(axis=1) >= limit)[hot]]
            if len(crowded):
                pr, r = hot_entries(sims, crowded, limit, 0)
                prs.append(pr)
                rows.append(r + s)
                scs.append(sims[pr, r])
                held += len(pr)
        if held > 4 * nb:
            pr, r, sc = prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)
            prs, rows, scs, held = [pr], [r], [sc], len(pr)
    return prune_band(np.concatenate(prs), np.concatenate(rows), np.concatenate(scs), theta, tol)


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
