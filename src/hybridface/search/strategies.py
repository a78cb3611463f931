"""The four search strategies (paper Figs. 3-5) behind one `Searcher` protocol.

`Exhaustive` compares every template; `Indexed` compares each probe with the identity codewords
first and re-ranks only the N nearest identities; `Parallel` splits identities over W threads;
`Hybrid` does both. Every strategy ends with the same exact re-ranking.
"""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.options import SearchOptions
from hybridface.search import cellscan, runtime
from hybridface.search.base import SearchResult
from hybridface.search.kernels import check_positive, kernel_result, prepare, range_candidates
from hybridface.search.rerank import exact_top1, segment_max, select_topk
from hybridface.search.runtime import DEFAULT_BLOCK_BYTES, run_in_threads, single_threaded_blas, split_identities
from hybridface.search.scan import direct_top1, fits_direct
from hybridface.search.shortlist import shortlist_candidates


# ---- `Exhaustive`: every template of every identity, via the chunked BLAS kernel.
class Exhaustive:
    """Compare each probe with all N templates; the reference every other strategy must match.

    Args:
        matrix: the gallery view.
        threads: how many threads search: ``1`` runs in the caller's thread with single-threaded
            BLAS (the paper's sequential baseline); ``> 1`` splits the probe batch (or, for fewer
            probes than ``2 * threads``, the identities) over that many threads, BLAS
            single-threaded in each. Results do not depend on ``threads``.
        block_bytes: memory budget of one similarity block.
        storage: ``"float32"`` (default) or ``"int8"``: also keep per-dimension int8 codes of the
            templates (``int8_``, +27 % memory at 60-D) and answer few-probe (at most
            ``runtime.FEW_PROBES``) k = 1 searches from them, streaming 64 instead of 240 bytes per
            template, with an exact float64 re-scoring of the certified band (see
            :mod:`~hybridface.search.int8`): results are bit-identical to ``"float32"``.
            Batches and k > 1 (compute-bound) use the float32 path. Needs Numba.
    """

    name = "exhaustive"

    def __init__(
        self, matrix: TemplateMatrix, *, threads: int = 1, block_bytes: int = DEFAULT_BLOCK_BYTES,
        storage: str = "float32",
    ):
        self.matrix = matrix
        self.threads = check_positive("threads", threads)
        self.block_bytes = check_positive("block_bytes", block_bytes)
        self.storage = SearchOptions(storage=storage).storage
        self.int8_ = None
        if storage == "int8":
            from hybridface.search.int8 import load_int8_kernel, quantize_int8

            load_int8_kernel()  # ConfigError without Numba; loads (or compiles) the kernel now
            self.int8_ = quantize_int8(matrix.vectors)

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        m, n = self.matrix.num_identities, p.shape[0]
        if self.int8_ is not None and k == 1 and 0 < n <= runtime.FEW_PROBES:
            from hybridface.search.int8 import int8_top1

            mat = self.matrix
            return int8_top1(p, self.int8_, mat.vectors, mat.offsets, mat.template_ids)
        if fits_direct(n, self.matrix.num_templates, k):  # one small product: threads cost more
            with single_threaded_blas():
                return direct_top1(p, self.matrix.vectors, self.matrix.offsets, self.matrix.template_ids)
        if self.threads == 1:
            parts = run_in_threads(
                lambda: range_candidates(p, self.matrix, 0, m, k, self.block_bytes), [()], 1
            )
        elif n >= 2 * self.threads:
            chunks = [c for c in np.array_split(np.arange(n), self.threads) if len(c)]
            parts = run_in_threads(
                lambda a, b: range_candidates(p[a:b], self.matrix, 0, m, k, self.block_bytes, probe_base=a),
                [(int(c[0]), int(c[-1]) + 1) for c in chunks],
                self.threads,
            )
        else:
            parts = run_in_threads(
                lambda lo, hi: range_candidates(p, self.matrix, lo, hi, k, self.block_bytes),
                split_identities(self.matrix.offsets, self.threads),
                self.threads,
            )
        return kernel_result(self.matrix, p, parts, k)


# ---- `Indexed`: LBG codewords → N nearest identities → their templates only (paper Fig. 3).
class Indexed:
    """Two-stage search over an LBG index.

    1. Cosine similarity of each probe to every identity's codewords (an identity scores the best
       of its codewords); the ``max(top_n, k)`` best identities form the shortlist.
    2. Exact comparison with all templates of the shortlisted identities only.

    With ``top_n >= number of identities`` the result equals `Exhaustive`'s. A matrix without
    codebooks is indexed on construction with one codeword (the normalised centroid) per identity,
    the paper's setting; use :func:`hybridface.index.lbg.build_codebooks` for more.

    ``cells`` (optional, for very large galleries): group the codewords into that many LBG cells
    (:mod:`~hybridface.search.shortlist`) and compare each probe only with the codewords of its
    ``probe_cells`` nearest cells in step 1, instead of with all of them. ``spill``: each codeword
    is filed in its ``spill`` nearest cells (default `~hybridface.search.shortlist.CELL_SPILL`).
    """

    name = "indexed"

    def __init__(
        self,
        matrix: TemplateMatrix,
        *,
        top_n: int = 5,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        cells: int | None = None,
        probe_cells: int = 16,
        spill: int | None = None,
    ):
        self.top_n = check_positive("top_n", top_n)
        self.block_bytes = check_positive("block_bytes", block_bytes)
        self.probe_cells = check_positive("probe_cells", probe_cells)
        if cells is not None:
            check_positive("cells", cells)
        if matrix.codewords is None:
            from hybridface.index.lbg import build_codebooks

            matrix = build_codebooks(matrix, codewords=1)
        self.matrix = matrix
        order = np.argsort(matrix.codeword_labels, kind="stable")
        self._codewords = np.ascontiguousarray(matrix.codewords[order])
        counts = np.bincount(matrix.codeword_labels, minlength=matrix.num_identities)
        self._cw_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._one_each = len(self._codewords) == matrix.num_identities and bool((counts == 1).all())
        self._max_per_identity = int(counts.max()) if len(counts) else 1
        self._cells = None
        self._one: cellscan.SingleTop1 | None = None  # built on the first single-probe search
        if cells is not None and cells < len(self._codewords):
            from hybridface.search.shortlist import CELL_SPILL, fit_cells

            spill = CELL_SPILL if spill is None else check_positive("spill", spill)
            owner = np.repeat(np.arange(matrix.num_identities, dtype=np.int64), counts)
            self._cells = fit_cells(self._codewords, owner, cells, spill=spill)
            self._max_per_identity *= min(spill, cells)  # the NumPy path merges the copies too

    def shortlist(self, probes: np.ndarray, size: int) -> tuple[np.ndarray, int]:
        """``(n, min(size, m))`` identity indices nearest by codeword, best first; evaluations."""
        m, n = self.matrix.num_identities, probes.shape[0]
        if size >= m:
            return np.broadcast_to(np.arange(m, dtype=np.int64), (n, m)), 0
        if self._cells is not None:
            from hybridface.search.shortlist import cell_shortlist

            return cell_shortlist(probes, self._cells, size, self.probe_cells, self._max_per_identity)
        c = self._codewords.shape[0]
        out = np.empty((n, size), np.int64)
        nb = int(max(1, min(n, self.block_bytes // (4 * max(c, 1)))))
        starts, counts = self._cw_offsets[:-1], np.diff(self._cw_offsets)
        for s in range(0, n, nb):
            if self._one_each:  # one codeword per identity, in identity order: no reduction needed
                per_id = probes[s : s + nb] @ self._codewords.T  # (nb, m)
            else:
                sims = self._codewords @ probes[s : s + nb].T  # (c, nb)
                per_id = np.ascontiguousarray(segment_max(sims, starts, counts).T)  # -inf: no codeword
            out[s : s + nb] = select_topk(per_id, size)
        return out, n * c

    #: threads used by the second stage (`Hybrid` sets more)
    workers = 1

    def _rerank(self, probes: np.ndarray, shortlist: np.ndarray, k: int, evaluations: int) -> SearchResult:
        """Second stage: the shortlisted identities' templates, then the exact final step."""
        m = self.matrix.num_identities
        if shortlist.shape[1] >= m:  # everything shortlisted: this is the exhaustive kernel
            parts = run_in_threads(
                lambda lo, hi: range_candidates(probes, self.matrix, lo, hi, k, self.block_bytes),
                split_identities(self.matrix.offsets, self.workers),
                self.workers,
            )
        else:
            parts = [
                shortlist_candidates(
                    probes, self.matrix.vectors, self.matrix.offsets, shortlist, k, workers=self._rerank_workers(shortlist)
                )
            ]
        result = kernel_result(self.matrix, probes, parts, k)
        return type(result)(
            result.identities, result.distances, result.template_ids, result.distance_evaluations + evaluations
        )

    def _rerank_workers(self, shortlist: np.ndarray) -> int:
        return 1

    def _compiled_top1(self, p: np.ndarray, k: int) -> SearchResult | None:
        """k = 1 over the cells in one compiled pass per probe (:mod:`~hybridface.search.cellscan`),
        or ``None`` where it does not apply (no cells, k > 1, no Numba, shortlist = everyone)."""
        if k != 1 or self._cells is None or self.top_n >= self.matrix.num_identities:
            return None
        if cellscan.cell_kernel() is None:
            return None
        mat = self.matrix
        if p.shape[0] == 1:  # one probe: the lean path when its band is one row (nearly always)
            one = self._single_top1()(p)
            if one is not None:
                return one
        band, ev, missing = cellscan.cells_band_top1(p, self._cells, mat.vectors, mat.offsets, size=self.top_n,
                                            probe_cells=self.probe_cells, workers=self.workers)
        if missing:  # some probe saw no template (empty cells): the general path answers it
            return None
        if len(band[0]) == p.shape[0]:  # one band row per probe, in probe order: re-score just it
            return self._one_row_each(p, band[1], band[3], ev)
        ids, dist, tids, ev2 = exact_top1(p, mat.vectors, mat.offsets, mat.template_ids, band[:3])
        return SearchResult(identities=ids, distances=dist, template_ids=tids, distance_evaluations=ev + ev2)

    def _single_top1(self) -> cellscan.SingleTop1:
        """The bound single-probe kernel for the current cells, ``top_n`` and ``probe_cells``."""
        one = self._one
        if one is None or one.cells is not self._cells or one.key != (self.top_n, self.probe_cells):
            mat = self.matrix
            one = self._one = cellscan.SingleTop1(self._cells, mat.vectors, mat.offsets, mat.template_ids,
                                                  size=self.top_n, probe_cells=self.probe_cells)
        return one

    def _one_row_each(self, p: np.ndarray, rows: np.ndarray, identities: np.ndarray, ev: int) -> SearchResult:
        """k = 1 when each probe's certified band is the one row ``rows[i]``: its float64 re-score."""
        mat = self.matrix
        dots = np.einsum("ij,ij->i", mat.vectors[rows], p, dtype=np.float64)  # as exact_top1
        return SearchResult(identities=identities[:, None], distances=(1.0 - dots).astype(np.float32)[:, None],
                            template_ids=mat.template_ids[rows][:, None], distance_evaluations=ev + len(rows))

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        fast = self._compiled_top1(p, k) if p.shape[0] <= runtime.FEW_PROBES else None
        if fast is not None:  # a few probes: BLAS stays single-threaded by itself, no thread juggling
            return fast
        with single_threaded_blas():  # idle OpenBLAS threads spin and slow the NumPy steps
            fast = self._compiled_top1(p, k) if p.shape[0] > runtime.FEW_PROBES else None
            if fast is not None:
                return fast
            candidates, ev = self.shortlist(p, max(self.top_n, k))
            return self._rerank(p, np.ascontiguousarray(candidates), k, ev)


# ---- `Parallel`: identities partitioned over W threads, per-probe top-k merged (paper Fig. 4).
class Parallel:
    """Exhaustive search with the identities split into ``workers`` contiguous, row-balanced parts.

    Returns exactly what `Exhaustive` returns (same kernel per part, ties to the lower identity).
    """

    name = "parallel"

    def __init__(self, matrix: TemplateMatrix, *, workers: int = 4, block_bytes: int = DEFAULT_BLOCK_BYTES):
        self.matrix = matrix
        self.workers = check_positive("workers", workers)
        self.block_bytes = check_positive("block_bytes", block_bytes)

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        if fits_direct(p.shape[0], self.matrix.num_templates, k):  # too small to split over threads
            with single_threaded_blas():
                return direct_top1(p, self.matrix.vectors, self.matrix.offsets, self.matrix.template_ids)
        parts = run_in_threads(
            lambda lo, hi: range_candidates(p, self.matrix, lo, hi, k, self.block_bytes),
            split_identities(self.matrix.offsets, self.workers),
            self.workers,
        )
        return kernel_result(self.matrix, p, parts, k)


# ---- `Hybrid`: the LBG shortlist, then the shortlisted identities re-ranked in parallel (paper
# Fig. 5).
#: Below this many template rows to re-rank, the re-ranking runs inline (threads cost more).
PARALLEL_MIN_ROWS = 20_000


class Hybrid(Indexed):
    """`Indexed` with both stages spread over ``workers`` threads (BLAS single-threaded in each).

    The codeword shortlist runs on probe blocks in parallel; then the shortlisted identities are
    split over the workers (row-balanced; each worker compares the templates of its identities with
    the probes that shortlisted them), and the per-identity results are merged and ordered exactly
    as in `Indexed`, so the answers are equal. Work too small to pay for threads (fewer than
    ``2 * workers`` probes for the shortlist, fewer than ``PARALLEL_MIN_ROWS`` template rows for
    the re-ranking) runs inline.
    """

    name = "hybrid"

    def __init__(
        self,
        matrix: TemplateMatrix,
        *,
        top_n: int = 5,
        workers: int = 4,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        cells: int | None = None,
        probe_cells: int = 16,
        spill: int | None = None,
    ):
        super().__init__(matrix, top_n=top_n, block_bytes=block_bytes, cells=cells, probe_cells=probe_cells,
                         spill=spill)
        self.workers = check_positive("workers", workers)

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        n, size = p.shape[0], max(self.top_n, k)
        fast = self._compiled_top1(p, k) if p.shape[0] <= runtime.FEW_PROBES else None
        if fast is not None:  # a few probes: BLAS stays single-threaded by itself, no thread juggling
            return fast
        with single_threaded_blas():
            fast = self._compiled_top1(p, k) if p.shape[0] > runtime.FEW_PROBES else None
            if fast is not None:
                return fast
            if n >= 2 * self.workers and size < self.matrix.num_identities:
                blocks = [b for b in np.array_split(np.arange(n), self.workers) if len(b)]
                parts = run_in_threads(
                    lambda a, b: self.shortlist(p[a:b], size),
                    [(int(b[0]), int(b[-1]) + 1) for b in blocks],
                    self.workers,
                )
                candidates = np.concatenate([c for c, _ in parts])
                ev = sum(e for _, e in parts)
            else:
                candidates, ev = self.shortlist(p, size)
            return self._rerank(p, np.ascontiguousarray(candidates), k, ev)

    def _rerank_workers(self, shortlist: np.ndarray) -> int:
        valid = shortlist[shortlist >= 0]
        rows = int(np.diff(self.matrix.offsets)[valid].sum()) if valid.size else 0
        return self.workers if rows >= PARALLEL_MIN_ROWS else 1
