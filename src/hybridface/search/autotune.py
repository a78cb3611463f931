"""Auto-tuned LBG cells for a target recall: the cheapest ``(top_n, probe_cells)`` that reaches it.

``cells`` defaults to a power of two near ``6 * sqrt(codewords)`` (finer than the usual
``sqrt`` balance between centre and codeword comparisons: with each codeword filed in two cells,
finer cells cut the codewords a probe scans more than they add centres; measured in
docs/search.md). On tuning queries the caller supplies (held
out from the queries it will time), each ``top_n`` of a small grid is tried with ``probe_cells``
doubling from 1 (then bisected down) until recall@1 against exhaustive search reaches the
target with 95 % confidence (`reaches`: so use a few thousand tuning queries for targets near 1; a larger ``top_n``
only while it needs fewer cells than the best so far); then `SMALL_TOP_N` near the best one's
cells; the pair with the lowest measured time wins. Recall is measured, not promised: on other queries it can differ.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from hybridface.errors import OptionError
from hybridface.gallery.matrix import TemplateMatrix

log = logging.getLogger(__name__)

#: shortlist sizes tried, cheapest first
TOP_N_GRID = (5, 10, 20, 40, 80, 160)
#: then these smaller ones, near the best setting's cells only (where the nearest identities by
#: codeword already hold the answer, fewer template rows cost less; elsewhere they cost a few tries)
SMALL_TOP_N = (3, 2)


@dataclass(frozen=True)
class CellTuning:
    """The chosen settings and what they measured on the tuning queries."""

    cells: int
    top_n: int
    probe_cells: int
    recall: float
    seconds_per_query: float
    #: the tuned `Hybrid` searcher itself (its cells already fitted), ready to use
    searcher: Any = field(default=None, repr=False, compare=False)


def check_recall(recall: float) -> float:
    """``recall`` as a float in (0, 1], else a one-line `OptionError`."""
    try:
        value = float(recall)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise OptionError(f"recall={recall!r} is not valid; use a number in (0, 1], e.g. 0.99")
    return value


#: one-sided z of `reaches` (95 %; was 90 %, whose cheapest passing setting measured 0.989 on other
#: queries at a 0.99 target: picking the cheapest of many passing settings favours a lucky one)
CONFIDENCE_Z = 1.6449


def reaches(observed: float, queries: int, target: float) -> bool:
    """Whether a recall ``observed`` on ``queries`` tuning queries shows the true recall is at
    least ``target`` with 95 % confidence (Wilson lower bound): a setting that only just touches
    the target on the tuning queries falls short on others about half the time. A target of 1
    needs every query right."""
    if target >= 1.0:
        return observed >= 1.0
    z2, n = CONFIDENCE_Z ** 2, max(int(queries), 1)
    low = (observed + z2 / (2 * n) - CONFIDENCE_Z * math.sqrt(observed * (1 - observed) / n + z2 / (4 * n * n)))
    return low / (1 + z2 / n) >= target


def default_cells(num_codewords: int) -> int:
    """A power of two near ``6 * sqrt(num_codewords)``, at most ``num_codewords // 8`` (>= 1)."""
    if num_codewords < 16:
        return 1
    target = 6.0 * math.sqrt(num_codewords)
    cells = 2 ** round(math.log2(target))
    return int(max(1, min(cells, num_codewords // 8)))


def bisect_down(recall_at: Callable[[int], float], lo: int, hi: int, recall: float, *, target: float,
                queries: int) -> tuple[int, float]:
    """The fewest setting in ``(lo, hi]`` whose ``recall_at`` `reaches` ``target`` (``hi`` does,
    with ``recall``; ``lo`` does not), by bisection: doubling alone overshoots by up to 2x.
    Returns ``(setting, its recall)``; used for our ``probe_cells`` and, in the benchmark, for
    FAISS's ``nprobe`` / ``efSearch``, so both are tuned by one rule."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = recall_at(mid)
        if reaches(r, queries, target):
            hi, recall = mid, r
        else:
            lo = mid
    return hi, recall


def tune_cells(
    matrix: TemplateMatrix,
    queries: np.ndarray,
    *,
    recall: float = 0.99,
    cells: int | None = None,
    top_n_grid: tuple[int, ...] = TOP_N_GRID,
    workers: int = 1,
) -> CellTuning:
    """The cheapest ``(top_n, probe_cells)`` over ``cells`` LBG cells with recall@1 >= ``recall``
    on ``queries`` ``(q, d)`` (exact answers from `Exhaustive`). Falls back to visiting every cell
    with the largest ``top_n`` when nothing reaches the target (reported in ``recall``)."""
    from hybridface.search.strategies import Exhaustive, Hybrid

    target = check_recall(recall)
    q = matrix.check_probes(queries)
    if q.shape[0] == 0:
        raise OptionError("tune_cells needs at least one tuning query")
    base = Hybrid(matrix, top_n=1, workers=workers)  # builds one codeword per identity if needed
    cells = default_cells(len(base._codewords)) if cells is None else int(cells)
    exact = Exhaustive(base.matrix).search(q, 1).identities[:, 0]
    s = Hybrid(base.matrix, top_n=1, workers=workers, cells=cells, probe_cells=1)  # cells fitted once
    best: CellTuning | None = None
    rec, spq = 0.0, float("inf")
    seconds: dict[tuple[int, int], float] = {}

    def recall_at(top_n: int, pc: int) -> float:  # recall of (top_n, pc); its time per query in `seconds`
        s.top_n, s.probe_cells = top_n, pc
        s.search(q[:4], 1)
        t0 = time.perf_counter()
        got = s.search(q, 1).identities[:, 0]
        seconds[top_n, pc] = (time.perf_counter() - t0) / len(q)
        return float((got == exact).mean())

    for top_n in top_n_grid:
        pc = 1
        while True:
            rec = recall_at(top_n, pc)
            spq = seconds[top_n, pc]
            if reaches(rec, len(q), target):
                pc, rec = bisect_down(lambda v: recall_at(top_n, v), pc // 2, pc, rec, target=target, queries=len(q))
                spq = seconds[top_n, pc]
                if best is None or spq < best.seconds_per_query:
                    best = CellTuning(cells, top_n, pc, rec, spq)
                break
            if pc >= cells or (best is not None and (2 * pc >= best.probe_cells or spq >= best.seconds_per_query)):
                break  # a larger top_n only pays with fewer cells visited, and costing less, than the best so far
            pc = min(2 * pc, cells)
    for top_n in SMALL_TOP_N if best is not None else ():
        if top_n >= best.top_n:
            continue
        pc, rec = best.probe_cells, recall_at(top_n, best.probe_cells)
        if not reaches(rec, len(q), target):
            pc, rec = min(2 * pc, cells), recall_at(top_n, min(2 * pc, cells))
            if not reaches(rec, len(q), target):
                continue
        pc, rec = bisect_down(lambda v: recall_at(top_n, v), pc // 2, pc, rec, target=target, queries=len(q))
        if seconds[top_n, pc] < best.seconds_per_query:
            best = CellTuning(cells, top_n, pc, rec, seconds[top_n, pc])
    if best is None:
        best = CellTuning(cells, top_n_grid[-1], cells, rec, spq)
        log.warning("no setting reached recall %.3f on the tuning queries; visiting every cell", target)
    s.top_n, s.probe_cells = best.top_n, best.probe_cells
    log.info("tuned cells: %s", best)
    return replace(best, searcher=s)
