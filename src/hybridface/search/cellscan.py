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

import numpy as np

from hybridface.search.base import SearchResult
from hybridface.search.rerank import band_tolerance
from hybridface.search.runtime import compiled, run_in_threads
from hybridface.search.shortlist import CodewordCells

#: Probes per block: bounds the ``(block, cells)`` centre-score array.
PROBE_BLOCK = 512
#: Blocks of more probes than this walk the visited cells cell by cell (shared codeword reads).
CELL_MAJOR_MIN = 8
#: Initial band entries per probe held by the output arrays (grown on demand by a second pass).
BAND_PER_PROBE = 4


def _insert_impl(v, c, sc, ix, pcn):  # pragma: no cover - runs compiled, called by the kernels
    """Insert cell ``c`` with score ``v`` into the descending list ``sc/ix[:pcn]`` (its last entry
    drops out); it goes after the entries with an equal score, whose cell indices are lower."""
    j = pcn - 1
    while j > 0 and sc[j - 1] < v:
        sc[j] = sc[j - 1]
        ix[j] = ix[j - 1]
        j -= 1
    sc[j] = v
    ix[j] = c


def _nearest_cells_impl(row, pcn, sc, ix):  # pragma: no cover - runs compiled, called by the kernels
    """The ``pcn`` best cells of the centre scores ``row`` into ``ix[:pcn]``, best first, ties to the
    lower cell index. The ``pcn``-th best maximum of blocks of 16 cells bounds the ``pcn``-th best
    score from below, so one pass over the block maxima leaves few cells to insert."""
    n = row.shape[0]
    for t in range(pcn):
        sc[t] = -np.inf
        ix[t] = -1
    floor = -np.inf
    nb = (n + 15) // 16
    if pcn < nb:
        for b in range(nb):
            m = row[16 * b]
            for c in range(16 * b + 1, min(n, 16 * b + 16)):
                m = max(m, row[c])
            if m > sc[pcn - 1]:
                _insert(m, b, sc, ix, pcn)
        floor = sc[pcn - 1]
        for t in range(pcn):
            sc[t] = -np.inf
            ix[t] = -1
    for c in range(n):
        v = row[c]
        if v >= floor and (v > sc[pcn - 1] or ix[pcn - 1] < 0):
            _insert(v, c, sc, ix, pcn)


def _scan_cell_impl(p, c, cw, cw8, cw_scale, cw_ident, cw_off, top_id, top_sc, worst):  # pragma: no cover
    """Offer the codewords of cell ``c`` to the probe's ``len(top_id)`` best distinct identities
    (``p`` zero-padded like ``cw``); returns the slot of the new worst of them."""
    size = top_id.shape[0]
    dp = cw.shape[1]
    use8 = cw8.shape[0] > 0
    thr = top_sc[worst]
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
            if top_id[x] == u:
                pos = x
                break
        if pos >= 0:
            if s > top_sc[pos]:
                top_sc[pos] = s
        else:
            top_id[worst] = u
            top_sc[worst] = s
        worst = 0
        for x in range(1, size):
            if top_sc[x] < top_sc[worst]:
                worst = x
        thr = top_sc[worst]
    return worst


def _score_rows_impl(p, top_id, vectors, offsets, row_sc, row_ix, row_id):  # pragma: no cover
    """float32 scores of every template row of the identities ``top_id`` (``-1``: none), written to
    the row buffers (grown when full). Returns ``(rows, best score, row_sc, row_ix, row_id)``."""
    d = p.shape[0]
    m = 0
    best = np.float32(-np.inf)
    for x in range(top_id.shape[0]):
        u = top_id[x]
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
    return m, best, row_sc, row_ix, row_id


#: what the kernels call: the Python functions until `cell_kernel` swaps in their compiled forms
_insert = _insert_impl
_nearest_cells = _nearest_cells_impl
_scan_cell = _scan_cell_impl
_score_rows = _score_rows_impl


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
    # (1) each probe's pc nearest cells, nearest first
    cell_sc = np.empty(pcn, np.float32)
    for i in range(n):
        _nearest_cells(near[i], pcn, cell_sc, pair_cell[i * pcn : (i + 1) * pcn])
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
    padded = np.zeros((n, cw.shape[1]), np.float32)
    padded[:, :d] = probes
    top_id = np.full((n, size), -1, np.int64)
    top_sc = np.full((n, size), -np.inf, np.float32)
    worst = np.zeros(n, np.int64)
    for w in range(n * pcn):
        t = walk[w]
        i = t // pcn
        c = pair_cell[t]
        worst[i] = _scan_cell(padded[i], c, cw, cw8, cw_scale, cw_ident, cw_off, top_id[i], top_sc[i], worst[i])
        evals += cw_off[c + 1] - cw_off[c]
    evals += n * n_cells
    # (3) their template rows in float32, (4) the certified band around each probe's best
    row_sc = np.empty(64, np.float32)
    row_ix = np.empty(64, np.int64)
    row_id = np.empty(64, np.int64)
    for i in range(n):
        m, best, row_sc, row_ix, row_id = _score_rows(probes[i], top_id[i], vectors, offsets, row_sc, row_ix, row_id)
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


def _single_kernel(probe, centres_t, centres8_t, centre_scale, pc, cw, cw8, cw_scale, cw_ident, cw_off, size,
                   vectors, offsets, tol):  # pragma: no cover - runs compiled
    """`_kernel` for one ``(d,)`` unit probe, centre scores included (from the int8 centre codes
    when the cells have them), when its band is one row:
    returns ``(row, identity, evaluations)``, with ``row = -1`` when the band holds several rows or
    no template was reached (the caller then takes the general path). Nothing crosses back into
    Python but three integers: one probe is what an identify request sends, and its cost is overhead."""
    d = centres_t.shape[0]
    if centres8_t.shape[1] > 0:  # int8 centre codes (large galleries): a quarter of the bytes
        n_cells = centres8_t.shape[1]
        near = np.zeros(n_cells, np.float32)
        for q in range(d):  # ``(d, C)`` centres: SIMD across cells
            pq = probe[q]
            row8 = centres8_t[q]
            for c in range(n_cells):
                near[c] += np.float32(row8[c]) * pq
        for c in range(n_cells):
            near[c] *= centre_scale[c]
    else:
        n_cells = centres_t.shape[1]
        near = np.zeros(n_cells, np.float32)
        for q in range(d):
            pq = probe[q]
            row = centres_t[q]
            for c in range(n_cells):
                near[c] += row[c] * pq
    pcn = min(pc, n_cells)
    cells = np.empty(pcn, np.int64)
    _nearest_cells(near, pcn, np.empty(pcn, np.float32), cells)
    padded = np.zeros(cw.shape[1], np.float32)
    padded[:d] = probe
    top_id = np.full(size, -1, np.int64)
    top_sc = np.full(size, -np.inf, np.float32)
    worst = 0
    evals = n_cells
    for t in range(pcn):
        c = cells[t]
        worst = _scan_cell(padded, c, cw, cw8, cw_scale, cw_ident, cw_off, top_id, top_sc, worst)
        evals += cw_off[c + 1] - cw_off[c]
    m, best, row_sc, row_ix, row_id = _score_rows(probe, top_id, vectors, offsets, np.empty(64, np.float32),
                                                  np.empty(64, np.int64), np.empty(64, np.int64))
    evals += m
    hit = -1
    for x in range(m):
        if row_sc[x] >= best - tol:
            if hit >= 0:
                return -1, -1, evals
            hit = x
    if hit < 0:
        return -1, -1, evals
    return row_ix[hit], row_id[hit], evals


#: the compiled kernels' options: float32 sums may be reassociated (the band tolerance bounds it)
_FAST = {"reassoc", "contract", "nnan", "nsz"}


@functools.lru_cache(maxsize=None)
def cell_kernel():
    """The compiled :func:`_kernel`, or ``None`` without Numba (callers then use NumPy paths); built
    once per process (every search asks for it)."""
    if not _compile_helpers():
        return None
    return compiled(_kernel, fastmath=_FAST)


@functools.lru_cache(maxsize=None)
def single_kernel():
    """The compiled :func:`_single_kernel`, or ``None`` without Numba."""
    if not _compile_helpers():
        return None
    return compiled(_single_kernel, fastmath=_FAST)


@functools.lru_cache(maxsize=None)
def _compile_helpers() -> bool:
    """Swap the compiled helpers into the globals the kernels resolve when they compile."""
    global _insert, _nearest_cells, _scan_cell, _score_rows
    _insert = compiled(_insert_impl, fastmath=_FAST, inline="always")
    if _insert is None:
        return False
    # after `_insert`, which `_nearest_cells` resolves when it compiles
    _nearest_cells, _scan_cell, _score_rows = (compiled(f, fastmath=_FAST) for f in (
        _nearest_cells_impl, _scan_cell_impl, _score_rows_impl))
    return True


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


class SingleTop1:
    """k = 1 for one ``(1, d)`` unit probe in one compiled call (:func:`_single_kernel`) and one
    float64 re-score, when the probe's certified band is a single row (nearly always). One probe
    is what an identify request sends, and its cost is overhead: the kernel's arguments are bound
    once here. Calling returns a `SearchResult`, or ``None`` when the band holds several rows or
    no template was reached (the caller then takes the general path)."""

    def __init__(self, cells: CodewordCells, vectors: np.ndarray, offsets: np.ndarray, template_ids: np.ndarray, *,
                 size: int, probe_cells: int):
        self.cells, self.key = cells, (size, probe_cells)
        self._kernel = single_kernel()
        self._args = (cells.centres_t, cells.centres8_t, cells.centre_scale, probe_cells, *_cell_arrays(cells), size,
                      vectors, offsets,
                      _tolerance(vectors.shape[1]))
        self._vectors, self._template_ids = vectors, template_ids

    def __call__(self, probe: np.ndarray) -> SearchResult | None:
        row, ident, ev = self._kernel(probe[0], *self._args)
        if row < 0:
            return None
        dot = np.einsum("ij,ij->i", self._vectors[row : row + 1], probe, dtype=np.float64)  # = exact_top1's
        # float64 ``1 - dot`` rounded to float32, as exact_top1 does it (scalar steps: less overhead)
        return SearchResult(identities=np.array([[ident]], np.int64), distances=np.array([[1.0 - dot[0]]], np.float32),
                            template_ids=np.array([[self._template_ids[row]]], np.int64), distance_evaluations=ev + 1)


def _cell_arrays(cells: CodewordCells) -> tuple[np.ndarray, ...]:
    """The kernel's ``cw, cw8, cw_scale, cw_ident, cw_off`` arguments."""
    return cells.scan, cells.scan8, cells.scale, cells.identity, cells.offsets


@functools.lru_cache(maxsize=None)
def _tolerance(d: int) -> np.float32:
    return np.float32(band_tolerance(d))
