"""Coarse cells over the identity codewords: the LBG index one level up, for very large galleries.

With one codeword per identity the flat shortlist compares every probe with all ``m = N / t``
codewords, so it can never be more than ``t`` (templates per identity) times cheaper than
exhaustive search. Here the codewords themselves are quantized into ``cells`` LBG cells (an LBG
codebook of the codewords, fitted on a sample); a probe is compared with the cell centres, then
with the codewords of its ``probe_cells`` nearest cells only, and the identities of the best of
those codewords form the shortlist. Like the shortlist itself this stage is approximate (an
identity whose codewords all lie outside the visited cells is missed); the re-ranking of the
shortlisted identities stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridface.search.topk import select_topk

#: Probes per block of the cell shortlist (bounds its ``(probes, visited codewords)`` arrays).
CELL_PROBE_BLOCK = 256
#: Blocks of at most this many probes gather their visited codewords (no loop over cells).
FEW_PROBES = 4


@dataclass(frozen=True)
class CodewordCells:
    """Codewords grouped by coarse cell.

    Attributes:
        centres: ``(C, d)`` float32 unit cell centres.
        codewords: ``(c, d)`` float32 codewords, cell after cell.
        identity: ``(c,)`` int64 identity index of each of those codewords.
        offsets: ``(C + 1,)`` int64 cell boundaries in ``codewords``.
    """

    centres: np.ndarray
    codewords: np.ndarray
    identity: np.ndarray
    offsets: np.ndarray

    @property
    def num_cells(self) -> int:
        return int(self.centres.shape[0])


def fit_cells(
    codewords: np.ndarray, identity: np.ndarray, cells: int, *, sample: int = 32, max_iter: int = 20, seed: int = 0
) -> CodewordCells:
    """LBG cells of ``codewords`` (``identity[i]`` owns codeword ``i``), fitted on at most
    ``sample * cells`` of them; every codeword goes to its nearest centre."""
    from hybridface.index.lbg import lbg

    rng = np.random.default_rng(seed)
    n = codewords.shape[0]
    train = codewords if n <= sample * cells else codewords[np.sort(rng.choice(n, sample * cells, replace=False))]
    centres = np.ascontiguousarray(lbg(train, cells, max_iter=max_iter, seed=seed), np.float32)
    assign = np.empty(n, np.int64)
    step = max(1, (8 << 20) // (4 * max(len(centres), 1)))
    for s in range(0, n, step):
        assign[s : s + step] = (codewords[s : s + step] @ centres.T).argmax(axis=1)
    order = np.argsort(assign, kind="stable")
    counts = np.bincount(assign, minlength=len(centres))
    return CodewordCells(
        centres=centres,
        codewords=np.ascontiguousarray(codewords[order]),
        identity=np.asarray(identity, np.int64)[order],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )


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
