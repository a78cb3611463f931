"""`Indexed`: LBG codewords → N nearest identities → their templates only (paper Fig. 3)."""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search.base import SearchResult
from hybridface.search.common import check_positive, kernel_result, prepare, range_candidates
from hybridface.search.shortlist import shortlist_candidates
from hybridface.search.threads import run_in_threads, single_threaded_blas, split_identities
from hybridface.search.topk import segment_max, select_topk
from hybridface.search.tuning import DEFAULT_BLOCK_BYTES


class Indexed:
    """Two-stage search over an LBG index.

    1. Cosine similarity of each probe to every identity's codewords (an identity scores the best
       of its codewords); the ``max(top_n, k)`` best identities form the shortlist.
    2. Exact comparison with all templates of the shortlisted identities only.

    With ``top_n >= number of identities`` the result equals `Exhaustive`'s. A matrix without
    codebooks is indexed on construction with one codeword (the normalised centroid) per identity,
    the paper's setting; use :func:`hybridface.index.lbg.build_codebooks` for more.

    ``cells`` (optional, for very large galleries): group the codewords into that many LBG cells
    (:mod:`~hybridface.search.cells`) and compare each probe only with the codewords of its
    ``probe_cells`` nearest cells in step 1, instead of with all of them.
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
        if cells is not None and cells < len(self._codewords):
            from hybridface.search.cells import fit_cells

            owner = np.repeat(np.arange(matrix.num_identities, dtype=np.int64), counts)
            self._cells = fit_cells(self._codewords, owner, cells)

    def shortlist(self, probes: np.ndarray, size: int) -> tuple[np.ndarray, int]:
        """``(n, min(size, m))`` identity indices nearest by codeword, best first; evaluations."""
        m, n = self.matrix.num_identities, probes.shape[0]
        if size >= m:
            return np.broadcast_to(np.arange(m, dtype=np.int64), (n, m)), 0
        if self._cells is not None:
            from hybridface.search.cells import cell_shortlist

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

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        p = prepare(self.matrix, probes, k)
        with single_threaded_blas():  # idle OpenBLAS threads spin and slow the NumPy steps
            candidates, ev = self.shortlist(p, max(self.top_n, k))
            return self._rerank(p, np.ascontiguousarray(candidates), k, ev)
