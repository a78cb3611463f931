"""Compiled k = 1 search over the LBG cells: one Numba pass per probe, no Python per probe.

For each probe the kernel (1) takes its ``probe_cells`` nearest cell centres (from one BLAS
product for the whole probe block), (2) streams the codewords of those cells, which
:func:`~hybridface.search.shortlist.fit_cells` stores contiguously cell after cell, keeping the
``size`` best *distinct* identities, (3) streams those identities' contiguous template rows in
float32, and (4) emits the certified band: every row within
:func:`~hybridface.search.rerank.band_tolerance` of the probe's best float32 score. The caller
re-scores the band rows in float64 (:func:`~hybridface.search.rerank.exact_top1`), so the answer
is the exact float64 re-rank of the shortlisted templates, as in `Indexed`/`Hybrid` without the
kernel. The float32 sums may be reassociated (``fastmath``): the band tolerance bounds the
rounding of any summation order.
"""

from __future__ import annotations

import numpy as np

from hybridface.search.rerank import band_tolerance
from hybridface.search.runtime import compiled, run_in_threads
from hybridface.search.shortlist import CodewordCells

#: Probes per block: bounds the ``(block, cells)`` centre-score array.
PROBE_BLOCK = 512
#: Initial band entries per probe held by the output arrays (grown on demand by a second pass).
BAND_PER_PROBE = 4


def _kernel(probes, near, pc, cw, cw_ident, cw_off, size, vectors, offsets, tol,
            out_pr, out_row, out_sc, out_id, probe_base):  # pragma: no cover - runs compiled
    """Band rows of every probe of the block; returns ``(entries, evaluations, probes without rows)``.

    ``cw (c, d)``: the codewords, cell after cell (each cell one contiguous block). Writes at most
    ``len(out_pr)`` entries; when the count returned is larger the caller grows the arrays and
    runs again.
    """
    n, d = probes.shape
    n_cells = near.shape[1]
    cap = out_pr.shape[0]
    count = 0
    evals = 0
    missing = 0
    top_id = np.empty(size, np.int64)
    top_sc = np.empty(size, np.float32)
    row_sc = np.empty(64, np.float32)
    row_ix = np.empty(64, np.int64)
    row_id = np.empty(64, np.int64)
    chosen = np.empty(n_cells, np.int64)
    for i in range(n):
        p = probes[i]
        # (1) the pc nearest cells (ties: lower cell index first)
        if pc >= n_cells:
            n_chosen = n_cells
            for c in range(n_cells):
                chosen[c] = c
        else:
            thr = -np.partition(-near[i], pc - 1)[pc - 1]
            n_chosen = 0
            for c in range(n_cells):
                if near[i, c] > thr:
                    chosen[n_chosen] = c
                    n_chosen += 1
            for c in range(n_cells):
                if n_chosen >= pc:
                    break
                if near[i, c] == thr:
                    chosen[n_chosen] = c
                    n_chosen += 1
        # nearest cells first: the shortlist's threshold rises early, so fewer insertions follow
        if n_chosen < n_cells:
            sel = chosen[:n_chosen].copy()
            order = np.argsort(-near[i][sel], kind="mergesort")
            for a in range(n_chosen):
                chosen[a] = sel[order[a]]
        # (2) the `size` best distinct identities by codeword in those cells
        for t in range(size):
            top_id[t] = -1
            top_sc[t] = -np.inf
        worst = 0
        for a in range(n_chosen):
            c = chosen[a]
            for j in range(cw_off[c], cw_off[c + 1]):
                s = np.float32(0.0)
                for q in range(d):
                    s += cw[j, q] * p[q]
                if s <= top_sc[worst]:
                    continue
                u = cw_ident[j]
                pos = -1
                for t in range(size):
                    if top_id[t] == u:
                        pos = t
                        break
                if pos >= 0:
                    if s > top_sc[pos]:
                        top_sc[pos] = s
                else:
                    top_id[worst] = u
                    top_sc[worst] = s
                worst = 0
                for t in range(1, size):
                    if top_sc[t] < top_sc[worst]:
                        worst = t
            evals += cw_off[c + 1] - cw_off[c]
        evals += n_cells
        # (3) their template rows in float32
        m = 0
        best = np.float32(-np.inf)
        for t in range(size):
            u = top_id[t]
            if u < 0:
                continue
            for r in range(offsets[u], offsets[u + 1]):
                s = np.float32(0.0)
                for q in range(d):
                    s += vectors[r, q] * p[q]
                if m == row_sc.shape[0]:
                    grown_sc = np.empty(2 * m, np.float32)
                    grown_ix = np.empty(2 * m, np.int64)
                    grown_id = np.empty(2 * m, np.int64)
                    grown_sc[:m] = row_sc
                    grown_ix[:m] = row_ix
                    grown_id[:m] = row_id
                    row_sc, row_ix, row_id = grown_sc, grown_ix, grown_id
                row_sc[m] = s
                row_ix[m] = r
                row_id[m] = u
                m += 1
                if s > best:
                    best = s
        evals += m
        if m == 0:
            missing += 1
        # (4) the certified band around the best
        for t in range(m):
            if row_sc[t] >= best - tol:
                if count < cap:
                    out_pr[count] = probe_base + i
                    out_row[count] = row_ix[t]
                    out_sc[count] = row_sc[t]
                    out_id[count] = row_id[t]
                count += 1
    return count, evals, missing


def cell_kernel():
    """The compiled :func:`_kernel`, or ``None`` without Numba (callers then use NumPy paths)."""
    return compiled(_kernel, fastmath={"reassoc", "contract", "nnan", "nsz"})


def cells_band_top1(
    probes: np.ndarray,
    cells: CodewordCells,
    vectors: np.ndarray,
    offsets: np.ndarray,
    *,
    size: int,
    probe_cells: int,
    workers: int = 1,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int, int]:
    """The certified k = 1 band ``(probe, row, float32 score, identity)`` of ``(n, d)`` unit probes
    over their ``size`` nearest identities by codeword in their ``probe_cells`` nearest cells (in
    probe order); the distance evaluations (centres + codewords + template rows); and how many
    probes found no template row (empty cells). Probe blocks run on up to ``workers`` threads
    (the kernel releases the GIL)."""
    kernel = cell_kernel()
    n = probes.shape[0]
    tol = np.float32(band_tolerance(probes.shape[1]))
    pc = int(min(probe_cells, cells.num_cells))
    step = max(1, min(PROBE_BLOCK, -(-n // max(workers, 1))))

    def block(a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
        p = probes[a : a + step]
        near = p @ cells.centres.T
        cap = BAND_PER_PROBE * len(p)
        while True:
            out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.float32),
                   np.empty(cap, np.int64))
            cnt, ev, missing = kernel(p, near, pc, cells.codewords, cells.identity, cells.offsets, size, vectors,
                                      offsets, tol, *out, a)
            if cnt <= cap:
                return out[0][:cnt], out[1][:cnt], out[2][:cnt], out[3][:cnt], int(ev), int(missing)
            cap = int(cnt)

    if n <= step:  # one block: no thread hand-off, no concatenation
        *band, ev, missing = block(0)
        return tuple(band), ev, missing  # type: ignore[return-value]
    parts = run_in_threads(block, [(a,) for a in range(0, n, step)], workers)
    band = tuple(np.concatenate([q[j] for q in parts]) for j in range(4))
    return band, sum(q[4] for q in parts), sum(q[5] for q in parts)  # type: ignore[return-value]
