"""Identity shortlists for indexed/hybrid search: candidates restricted to each probe's N
nearest identities, and the optional coarse LBG cells over the identity codewords.

With ``cells``, each probe is compared with the codewords of its ``probe_cells`` nearest cells
only, and the identities of the best of those codewords form the shortlist.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hybridface.search import runtime
from hybridface.search.rerank import Candidates, band_tolerance, gathered_chunks, kth_best, prune_band, select_topk
from hybridface.search.runtime import run_in_threads


# ---- Kernel candidates restricted to per-probe identity shortlists (the indexed and hybrid
# strategies).
def _score_gathered(probes, vectors, offsets, pairs, ids, c, scores) -> int:
    """Best float32 similarity of (probe = pair // c, identity) pairs by gathering their rows."""
    starts = offsets[ids]
    counts = offsets[ids + 1] - starts
    max_rows = max(1, runtime.RERANK_BYTES // (8 * probes.shape[1]))
    for a, cnt, nz, seg, rows in gathered_chunks(starts, counts, max_rows):
        chunk = pairs[a:a + len(cnt)]
        dots = np.einsum("ij,ij->i", vectors[rows], probes[np.repeat(chunk // c, cnt)])
        scores[chunk[nz]] = np.maximum.reduceat(dots, seg[nz])
    return int(counts.sum())


def shortlist_candidates(
    probes: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    shortlist: np.ndarray,
    k: int,
    *,
    workers: int = 1,
) -> Candidates:
    """Kernel candidates restricted to per-probe shortlists ``(n, c)`` of identities (``-1`` = none).

    Pairs are grouped by identity, so each shortlisted identity costs one BLAS product of its
    contiguous rows with the probes that shortlisted it. The distinct identities are split over
    ``workers`` threads (row-balanced). Returns the band around each probe's k-th best, as
    :func:`kernel_candidates` does.
    """
    n, c = shortlist.shape
    flat = shortlist.ravel()
    valid = np.flatnonzero(flat >= 0)
    order = valid[np.argsort(flat[valid], kind="stable")]
    ids_sorted = flat[order]
    cut = np.flatnonzero(np.diff(ids_sorted)) + 1
    g_start = np.concatenate([[0], cut]).astype(np.int64)
    g_end = np.concatenate([cut, [len(order)]]).astype(np.int64)
    scores = np.full(n * c, -np.inf, np.float32)

    def score(g_lo: int, g_hi: int) -> int:
        evals = 0
        for a, b in zip(g_start[g_lo:g_hi], g_end[g_lo:g_hi]):
            u = ids_sorted[a]
            rows = vectors[offsets[u] : offsets[u + 1]]
            if len(rows):
                pairs = order[a:b]
                scores[pairs] = (rows @ probes[pairs // c].T).max(axis=0)
                evals += len(rows) * len(pairs)
        return evals

    n_groups = len(g_start)
    counts = np.diff(offsets)
    total_rows = int(counts[ids_sorted].sum()) if len(ids_sorted) else 0
    if total_rows * probes.shape[1] < n_groups * runtime.GATHER_RATIO:
        # many small identities: one gathered, vectorised pass beats a BLAS call per identity
        parts = [p for p in np.array_split(np.arange(len(order)), max(1, min(workers, len(order)))) if len(p)]
        evals = sum(
            run_in_threads(
                lambda idx: _score_gathered(probes, vectors, offsets, order[idx], ids_sorted[idx], c, scores),
                [(p,) for p in parts],
                workers,
            )
        )
        jobs = []
    elif workers > 1 and n_groups > 1:
        sizes = np.diff(offsets)[ids_sorted[g_start]] * (g_end - g_start)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        cuts = np.searchsorted(bounds, bounds[-1] * np.arange(1, workers) / workers)
        edges = np.unique(np.concatenate([[0], np.clip(cuts, 0, n_groups), [n_groups]]))
        jobs = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    else:
        jobs = [(0, n_groups)]
    if jobs:
        evals = sum(run_in_threads(score, jobs, workers))
    keep = np.flatnonzero(scores > -np.inf)
    tol = band_tolerance(probes.shape[1])
    pr, ident, sc = keep // c, flat[keep], scores[keep]
    pr, ident, sc = prune_band(pr, ident, sc, kth_best(pr, sc, k, n), tol)
    return Candidates(pr, ident, sc, evals)


# ---- Coarse cells over the identity codewords: the LBG index one level up, for very large
# galleries.
#: Probes per block of the cell shortlist (bounds its ``(probes, visited codewords)`` arrays).
CELL_PROBE_BLOCK = 256
#: Blocks of at most this many probes gather their visited codewords (no loop over cells).
FEW_PROBES = 4


#: Codeword rows of the compiled scan are padded to a multiple of this many float32 columns.
SCAN_ALIGN = 32
#: Cells whose float32 scan is larger than this also get int8 codes, and the compiled kernel scans
#: those: past a core's L2 cache the scan is bound by memory, and int8 reads a quarter of the bytes
#: (at 100K templates the interleaved single-probe benchmark gains ~10 %, docs/search.md).
INT8_SCAN_BYTES = 1 << 20
#: Each codeword is filed in this many of its nearest cells: a probe near the border of a cell
#: still finds it among the cells it visits, so it visits fewer (measured in docs/search.md).
CELL_SPILL = 2
#: At most this many codewords train the cells (at least 8 per cell): bounds the LBG fit at 10M.
MAX_TRAIN = 32_768


@dataclass(frozen=True)
class CodewordCells:
    """Codewords grouped by coarse cell.

    Attributes:
        centres: ``(C, d)`` float32 unit cell centres.
        codewords: ``(c, d)`` float32 codewords, cell after cell.
        identity: ``(c,)`` int64 identity index of each of those codewords.
        offsets: ``(C + 1,)`` int64 cell boundaries in ``codewords``.
        scan: ``(c, SCAN_ALIGN·⌈d / SCAN_ALIGN⌉)`` the same codewords zero-padded to whole SIMD
            blocks, for the compiled scan (:mod:`~hybridface.search.cellscan`): a dimension with
            no scalar remainder runs about twice as fast; ``(0, ...)`` when ``scan8`` holds codes.
        scan8: ``(c, same columns)`` int8 codes of ``scan`` (symmetric, one scale per codeword),
            or an empty ``(0, columns)`` array: the kernel scans these when present (the
            shortlist's codeword scores are then approximate; the answer stays the exact re-rank
            of the shortlisted templates).
        scale: ``(c,)`` float32 scale of each code row (empty without codes).
        centres8_t: ``(d, C)`` int8 codes of the centres, transposed, with codes (else ``(d, 0)``):
            ``centres`` then holds exactly ``code * centre_scale`` (float32), and the one-probe
            kernel reads the codes, a quarter of the bytes (the centres are what a probe reads whole).
        centre_scale: ``(C,)`` float32 scale of each centre's codes (empty without codes).
    """

    centres: np.ndarray
    codewords: np.ndarray
    identity: np.ndarray
    offsets: np.ndarray
    scan: np.ndarray
    scan8: np.ndarray
    scale: np.ndarray
    centres8_t: np.ndarray
    centre_scale: np.ndarray

    @property
    def num_cells(self) -> int:
        return int(self.centres.shape[0])

    @functools.cached_property
    def centres_t(self) -> np.ndarray:
        """``(d, C)`` the centres transposed: one probe's centre scores then need no horizontal sums
        (``(d, 0)`` when the kernel reads ``centres8_t`` instead)."""
        if self.centres8_t.shape[1]:
            return np.zeros((self.centres.shape[1], 0), np.float32)
        return np.ascontiguousarray(self.centres.T)


def fit_cells(
    codewords: np.ndarray, identity: np.ndarray, cells: int, *, sample: int = 32, max_iter: int = 8, seed: int = 0,
    int8: bool | None = None, spill: int = 1,
) -> CodewordCells:
    """LBG cells of ``codewords`` (``identity[i]`` owns codeword ``i``), fitted on at most
    ``sample * cells`` of them (fewer, but >= 8 per cell, beyond `MAX_TRAIN`); every codeword goes
    to its nearest centre. ``int8``: also int8 scan codes (default: when the float32 scan is over
    `INT8_SCAN_BYTES`). ``spill``: each codeword also goes to its next ``spill - 1`` nearest
    cells (a probe then finds it in more of the cells it visits; the scan holds ``spill`` copies)."""
    from hybridface.index.lbg import lbg

    rng = np.random.default_rng(seed)
    n = codewords.shape[0]
    sample = max(8, min(sample, MAX_TRAIN // max(cells, 1)))  # bounded fit time at very many cells
    train = codewords if n <= sample * cells else codewords[np.sort(rng.choice(n, sample * cells, replace=False))]
    centres = np.ascontiguousarray(lbg(train, cells, max_iter=max_iter, seed=seed), np.float32)
    d = codewords.shape[1]
    codes = n * -(-d // SCAN_ALIGN) * SCAN_ALIGN * 4 * max(1, min(spill, len(centres))) > INT8_SCAN_BYTES \
        if int8 is None else bool(int8)
    centres8_t, centre_scale = np.zeros((d, 0), np.int8), np.zeros(0, np.float32)
    if codes:  # the centres become their int8 codes times a scale: what every path then compares with
        centre_scale, c8 = _int8_rows(centres)
        centres = (c8 * centre_scale[:, None]).astype(np.float32)
        centres8_t = np.ascontiguousarray(c8.T)
    spill = int(min(max(1, spill), len(centres)))
    assign = np.empty((n, spill), np.int64)
    step = max(1, (8 << 20) // (4 * max(len(centres), 1)))
    for s in range(0, n, step):
        sims = codewords[s : s + step] @ centres.T
        if spill == 1:
            assign[s : s + step, 0] = sims.argmax(axis=1)
        else:
            assign[s : s + step] = np.argpartition(-sims, spill - 1, axis=1)[:, :spill]
    assign = assign.ravel()
    order = np.argsort(assign, kind="stable")
    counts = np.bincount(assign, minlength=len(centres))
    rows = order // spill  # the codeword of each scan row
    scan = np.zeros((len(rows), -(-d // SCAN_ALIGN) * SCAN_ALIGN), np.float32)
    scan[:, :d] = codewords[rows]
    codewords = np.ascontiguousarray(scan[:, :d])
    scale, scan8 = np.zeros(0, np.float32), np.zeros((0, scan.shape[1]), np.int8)
    if codes:  # the kernel scans only the codes
        scale, scan8 = _int8_rows(scan)
        scan = np.zeros((0, scan.shape[1]), np.float32)
    return CodewordCells(
        centres=centres,
        codewords=codewords,
        scan=scan,
        identity=np.asarray(identity, np.int64)[rows],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        scan8=scan8,
        scale=scale,
        centres8_t=centres8_t,
        centre_scale=centre_scale,
    )


def _int8_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of each row of ``x``: ``(scale (n,) float32, codes (n, d) int8)``."""
    scale = (np.abs(x).max(axis=1) / 127).astype(np.float32)
    return scale, np.rint(x / np.where(scale > 0, scale, 1)[:, None]).astype(np.int8)


def cell_shortlist(
    probes: np.ndarray, cells: CodewordCells, size: int, probe_cells: int, max_per_identity: int
) -> tuple[np.ndarray, int]:
    """``(n, size)`` identities nearest by codeword among each probe's ``probe_cells`` nearest
    cells, best first (``-1`` pads); and the distance evaluations (centres + codewords visited).

    ``max_per_identity``: the most codewords any identity has (1 = no duplicates to merge).
    """
    n = probes.shape[0]
    out = np.full((n, size), -1, np.int64)
    evals = 0
    for s in range(0, n, CELL_PROBE_BLOCK):
        ids, ev = _block(probes[s : s + CELL_PROBE_BLOCK], cells, size, probe_cells, max_per_identity)
        out[s : s + len(ids), : ids.shape[1]] = ids
        evals += ev
    return out, evals


def _block(probes, cells: CodewordCells, size: int, probe_cells: int, max_per_identity: int):
    n, n_cells = probes.shape[0], cells.num_cells
    pc = min(probe_cells, n_cells)
    near = probes @ cells.centres.T  # (n, C)
    top = np.argpartition(-near, pc - 1, axis=1)[:, :pc] if pc < n_cells else np.broadcast_to(
        np.arange(n_cells), (n, n_cells))
    lens = np.diff(cells.offsets)[top]  # (n, pc) codewords per visited cell
    slot = np.cumsum(lens, axis=1) - lens  # where each visited cell's scores start in the row
    width = int(lens.sum(axis=1).max()) if n else 0
    scores = np.full((n, max(width, 1)), -np.inf, np.float32)
    if n <= FEW_PROBES:  # gather each probe's visited codewords: one product instead of a loop
        for i in range(n):
            cnt = lens[i]
            idx = np.repeat(cells.offsets[top[i]] - slot[i], cnt) + np.arange(int(cnt.sum()))
            scores[i, : len(idx)] = cells.codewords[idx] @ probes[i]
        return _select(scores, top, slot, cells, size, max_per_identity), n * n_cells + int(lens.sum())
    flat_cell, flat_slot = top.ravel(), slot.ravel()
    flat_probe = np.repeat(np.arange(n), pc)
    order = np.argsort(flat_cell, kind="stable")
    sorted_cells = flat_cell[order]
    cut = np.flatnonzero(np.diff(sorted_cells)) + 1
    for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(order)]])):
        c = int(sorted_cells[a])
        lo, hi = int(cells.offsets[c]), int(cells.offsets[c + 1])
        if hi == lo:
            continue
        pairs = order[a:b]
        rows = flat_probe[pairs]
        scores[rows[:, None], flat_slot[pairs][:, None] + np.arange(hi - lo)] = probes[rows] @ cells.codewords[lo:hi].T
    return _select(scores, top, slot, cells, size, max_per_identity), n * n_cells + int(lens.sum())


def _select(scores, top, slot, cells: CodewordCells, size: int, max_per_identity: int) -> np.ndarray:
    """The ``size`` best distinct identities per row of the visited codewords' ``scores``."""
    n = scores.shape[0]
    want = size if max_per_identity == 1 else size * max_per_identity
    pos = select_topk(scores, min(want, scores.shape[1]))
    ok = np.take_along_axis(scores, pos, axis=1) > -np.inf
    # slot -> (visited cell, offset in it) -> codeword position in `cells.codewords`
    t = (pos[:, :, None] >= slot[:, None, :]).sum(axis=2) - 1  # slots ascend along a row
    r = np.arange(n)[:, None]
    cw = cells.offsets[top[r, t]] + pos - slot[r, t]
    ids = np.where(ok, cells.identity[np.where(ok, cw, 0)], -1)
    if max_per_identity == 1:
        return ids
    # several codewords per identity: keep each identity's first (best) occurrence
    k2 = ids.shape[1]
    r, j, i = np.repeat(np.arange(n), k2), np.tile(np.arange(k2), n), ids.ravel()
    o = np.lexsort((j, i, r))
    first = np.ones(len(o), bool)
    first[1:] = (r[o][1:] != r[o][:-1]) | (i[o][1:] != i[o][:-1])
    keep = np.zeros(len(o), bool)
    keep[o[first]] = True
    keep &= i >= 0
    keep = keep.reshape(n, k2)
    rank = np.cumsum(keep, axis=1) - 1
    out = np.full((n, size), -1, np.int64)
    rr, cc = np.nonzero(keep & (rank < size))
    out[rr, rank[rr, cc]] = ids[rr, cc]
    return out
