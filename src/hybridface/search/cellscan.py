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

import functools
import threading

import numpy as np

from hybridface.search.rerank import band_tolerance
from hybridface.search.runtime import compiled, run_in_threads
from hybridface.search.shortlist import CodewordCells

#: Probes per block: bounds the ``(block, cells)`` centre-score array.
PROBE_BLOCK = 512
#: Blocks of more probes than this walk the visited cells cell by cell (shared codeword reads).
CELL_MAJOR_MIN = 8
#: Initial band entries per probe held by the output arrays (grown on demand by a second pass).
BAND_PER_PROBE = 4


def _sift_down_impl(sc, ix, i, n):  # pragma: no cover - runs compiled, called by the kernel
    """Restore the min-heap below ``i`` (worst = lowest score, then highest index)."""
    while True:
        lo = i
        for ch in (2 * i + 1, 2 * i + 2):
            if ch < n and (sc[ch] < sc[lo] or (sc[ch] == sc[lo] and ix[ch] > ix[lo])):
                lo = ch
        if lo == i:
            return
        sc[i], sc[lo] = sc[lo], sc[i]
        ix[i], ix[lo] = ix[lo], ix[i]
        i = lo



#: what `_kernel` calls: the Python function until `cell_kernel` swaps in its compiled form
_sift_down = _sift_down_impl

def _kernel(probes, near, pc, cw, cw8, cw_scale, cw_ident, cw_off, size, vectors, offsets, tol,
            out_pr, out_row, out_sc, out_id, probe_base, cell_major):  # pragma: no cover - runs compiled
    """Band rows of every probe of the block; returns ``(entries, evaluations, probes without rows)``.

    ``cw (c, dp)``: the codewords, cell after cell (each cell one contiguous block), zero-padded
    to ``dp >= d`` columns; ``cw8``/``cw_scale``: their int8 codes, scanned instead when not empty. With
    ``cell_major`` the (probe, visited cell) pairs are walked cell by cell, so a cell's codewords
    are read once for all the block's probes that visit it (batches); otherwise probe by probe,
    nearest cell first (a few probes). Writes at most ``len(out_pr)`` entries; when the count
    returned is larger the caller grows the arrays and runs again.
    """
    n, d = probes.shape
    n_cells = near.shape[1]
    cap = out_pr.shape[0]
    count = 0
    evals = 0
    missing = 0
    pcn = min(pc, n_cells)
    pair_cell = np.empty(n * pcn, np.int64)
    # (1) each probe's pc nearest cells, ties to the lower cell index: a binary min-heap of the pc
    # best so far (root = the worst of them; a later cell with an equal score loses, as its index
    # is higher)
    heap_sc = np.empty(pcn, np.float32)
    heap_ix = np.empty(pcn, np.int64)
    for i in range(n):
        base = i * pcn
        if pcn >= n_cells:  # every cell, in index order
            for c in range(n_cells):
                pair_cell[base + c] = c
            continue
        row = near[i]
        for c in range(pcn):  # heapify the first pc cells
            heap_sc[c] = row[c]
            heap_ix[c] = c
        for c in range(pcn // 2 - 1, -1, -1):
            _sift_down(heap_sc, heap_ix, c, pcn)
        for c in range(pcn, n_cells):
            if row[c] > heap_sc[0]:
                heap_sc[0] = row[c]
                heap_ix[0] = c
                _sift_down(heap_sc, heap_ix, 0, pcn)
        for t in range(pcn):  # heap order: the visit order changes no result but exact score ties
            pair_cell[base + t] = heap_ix[t]
    # the walk over (probe, cell) pairs: probe-major as built, or counting-sorted by cell
    walk = np.arange(n * pcn)
    if cell_major:
        per_cell = np.zeros(n_cells + 1, np.int64)
        for t in range(n * pcn):
            per_cell[pair_cell[t] + 1] += 1
        for c in range(n_cells):
            per_cell[c + 1] += per_cell[c]
        for t in range(n * pcn):
            c = pair_cell[t]
            walk[per_cell[c]] = t
            per_cell[c] += 1
    # (2) per probe, the `size` best distinct identities by codeword in its visited cells
    # (``cw`` is zero-padded to ``dp`` columns: a whole number of SIMD blocks, no scalar tail)
    dp = cw.shape[1]
    use8 = cw8.shape[0] > 0
    padded = np.zeros((n, dp), np.float32)
    padded[:, :d] = probes
    top_id = np.full((n, size), -1, np.int64)
    top_sc = np.full((n, size), -np.inf, np.float32)
    worst = np.zeros(n, np.int64)
    for w in range(n * pcn):
        t = walk[w]
        i = t // pcn
        c = pair_cell[t]
        p = padded[i]
        thr = top_sc[i, worst[i]]
        for j in range(cw_off[c], cw_off[c + 1]):
            s = np.float32(0.0)
            if use8:
                for q in range(dp):
                    s += np.float32(cw8[j, q]) * p[q]
                s *= cw_scale[j]
            else:
                for q in range(dp):
                    s += cw[j, q] * p[q]
            if s <= thr:
                continue
            u = cw_ident[j]
            pos = -1
            for x in range(size):
                if top_id[i, x] == u:
                    pos = x
                    break
            if pos >= 0:
                if s > top_sc[i, pos]:
                    top_sc[i, pos] = s
            else:
                top_id[i, worst[i]] = u
                top_sc[i, worst[i]] = s
            wi = 0
            for x in range(1, size):
                if top_sc[i, x] < top_sc[i, wi]:
                    wi = x
            worst[i] = wi
            thr = top_sc[i, wi]
        evals += cw_off[c + 1] - cw_off[c]
    evals += n * n_cells
    # (3) their template rows in float32, (4) the certified band around each probe's best
    row_sc = np.empty(64, np.float32)
    row_ix = np.empty(64, np.int64)
    row_id = np.empty(64, np.int64)
    for i in range(n):
        p = probes[i]
        m = 0
        best = np.float32(-np.inf)
        for x in range(size):
            u = top_id[i, x]
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
        for x in range(m):
            if row_sc[x] >= best - tol:
                if count < cap:
                    out_pr[count] = probe_base + i
                    out_row[count] = row_ix[x]
                    out_sc[count] = row_sc[x]
                    out_id[count] = row_id[x]
                count += 1
    return count, evals, missing


@functools.lru_cache(maxsize=None)
def cell_kernel():
    """The compiled :func:`_kernel`, or ``None`` without Numba (callers then use NumPy paths); built
    once (a single-probe call asks for it twice)."""
    helper = compiled(_sift_down_impl)
    if helper is None:
        return None
    global _sift_down
    _sift_down = helper  # a global the kernel resolves when it compiles: the compiled helper
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
    tol = _tolerance(probes.shape[1])
    pc = int(min(probe_cells, cells.num_cells))
    step = max(1, min(PROBE_BLOCK, -(-n // max(workers, 1))))

    def block(a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
        p = probes[a : a + step]
        near = p @ cells.centres.T
        cap = BAND_PER_PROBE * len(p)
        while True:
            out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.float32),
                   np.empty(cap, np.int64))
            cnt, ev, missing = kernel(p, near, pc, *_cell_arrays(cells), size, vectors, offsets, tol, *out, a,
                                      len(p) > CELL_MAJOR_MIN)
            if cnt <= cap:
                return out[0][:cnt], out[1][:cnt], out[2][:cnt], out[3][:cnt], int(ev), int(missing)
            cap = int(cnt)

    if n <= step:  # one block: no thread hand-off, no concatenation
        *band, ev, missing = block(0)
        return tuple(band), ev, missing  # type: ignore[return-value]
    parts = run_in_threads(block, [(a,) for a in range(0, n, step)], workers)
    band = tuple(np.concatenate([q[j] for q in parts]) for j in range(4))
    return band, sum(q[4] for q in parts), sum(q[5] for q in parts)  # type: ignore[return-value]


def single_band_row(probe: np.ndarray, cells: CodewordCells, vectors: np.ndarray, offsets: np.ndarray, *,
                    size: int, probe_cells: int) -> tuple[int, int, int] | None:
    """One ``(1, d)`` unit probe's certified band when it is a single row: ``(row, identity,
    evaluations)``; ``None`` when the band holds several rows or no template was reached (the
    caller then takes the general path). The same kernel, writing into this thread's reused
    one-entry output arrays: one probe is what an identify request sends, and its cost is overhead."""
    out = getattr(_ONE, "out", None)
    if out is None:
        out = _ONE.out = (np.empty(1, np.int64), np.empty(1, np.int64), np.empty(1, np.float32),
                          np.empty(1, np.int64))
    cnt, ev, missing = cell_kernel()(probe, probe @ cells.centres.T, probe_cells, *_cell_arrays(cells), size,
                                     vectors, offsets, _tolerance(probe.shape[1]), *out, 0, False)
    if cnt != 1 or missing:
        return None
    return int(out[1][0]), int(out[3][0]), int(ev)


#: per-thread output arrays of `single_band_row` (searches run on many threads in the service)
_ONE = threading.local()


def _cell_arrays(cells: CodewordCells) -> tuple[np.ndarray, ...]:
    """The kernel's ``cw, cw8, cw_scale, cw_ident, cw_off`` arguments."""
    return cells.scan, cells.scan8, cells.scale, cells.identity, cells.offsets


@functools.lru_cache(maxsize=None)
def _tolerance(d: int) -> np.float32:
    return np.float32(band_tolerance(d))
