"""The exhaustive float32 kernel driver and the shared strategy plumbing.

``kernel_candidates`` walks probe blocks and gallery chunks, dispatching to the k = 1 or k > 1
scan; ``kernel_result`` turns candidates into an exact `SearchResult`; argument checks.
"""

from __future__ import annotations

import numpy as np

from hybridface.errors import ConfigError, EmptyGalleryError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search import runtime
from hybridface.search.base import SearchResult
from hybridface.search.rerank import (
    Candidates,
    band_tolerance,
    candidate_matrix,
    exact_scores,
    exact_top1,
    finalize,
)
from hybridface.search.runtime import DEFAULT_BLOCK_BYTES
from hybridface.search.scan import band_top1, band_top1_few, band_topk

__all__ = ["check_positive", "exact_result", "kernel_candidates", "kernel_result", "prepare", "range_candidates"]


# ---- The one exhaustive search kernel and the exact re-ranking every strategy finishes with.
def _rows_per_chunk(n_probes: int, n_rows: int, block_bytes: int) -> int:
    return int(min(max(n_rows, 1), max(runtime.MIN_CHUNK_ROWS, block_bytes // (4 * max(n_probes, 1)))))


def kernel_candidates(
    probes: np.ndarray,
    vectors: np.ndarray,
    offsets: np.ndarray,
    k: int,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Candidates:
    """Candidate identities of a contiguous row range (the exhaustive kernel).

    Args:
        probes: ``(n, d)`` float32 unit rows.
        vectors: ``(R, d)`` float32 unit rows grouped by identity.
        offsets: ``(m + 1,)`` row boundaries *relative to* ``vectors`` (``offsets[0] == 0``).
        k: identities wanted per probe.
        block_bytes: memory budget of one float32 similarity block.

    Returns:
        `Candidates` with *local* identity indices (add the range's first identity), certified to
        contain each probe's exact top-k; ``evaluations`` = probe-template products computed.
    """
    offsets = np.asarray(offsets, np.int64)
    n, n_rows = probes.shape[0], vectors.shape[0]
    empty = Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n == 0 or n_rows == 0:
        return empty
    tol = band_tolerance(probes.shape[1])
    nb = min(n, runtime.PROBE_BLOCK)
    rc = _rows_per_chunk(nb, n_rows, block_bytes)
    prs, ids, scs = [], [], []
    bands: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for ps in range(0, n, nb):
        p = probes[ps : ps + nb]
        if k == 1:
            if p.shape[0] <= runtime.FEW_PROBES:
                pr, r, sc = band_top1_few(p, vectors, tol)
            else:
                pr, r, sc = band_top1(p, vectors, _rows_per_chunk(nb, n_rows, min(block_bytes, runtime.TOP1_BLOCK_BYTES)), tol)
            bands.append((pr + ps, r, sc))
            ident = np.searchsorted(offsets, r, side="right") - 1  # row -> identity (few rows)
            # one entry per (probe, identity): its best row (already so with one band row per probe)
            if not (len(pr) == p.shape[0] and (np.bincount(pr, minlength=p.shape[0]) == 1).all()):
                order = np.lexsort((-sc, ident, pr))
                pr, ident, sc = pr[order], ident[order], sc[order]
                first = np.ones(len(pr), bool)
                first[1:] = (pr[1:] != pr[:-1]) | (ident[1:] != ident[:-1])
                pr, ident, sc = pr[first], ident[first], sc[first]
        else:
            pr, ident, sc = band_topk(p, vectors, offsets, k, rc, tol)
        prs.append(pr + ps)
        ids.append(ident)
        scs.append(sc)
    band = tuple(np.concatenate(a) for a in zip(*bands)) if bands else None
    return Candidates(np.concatenate(prs), np.concatenate(ids), np.concatenate(scs), n * n_rows,
                      band)  # type: ignore[arg-type]


# ---- Helpers shared by the four strategies: argument checks and the exact final step.
def check_positive(name: str, value: int) -> int:
    """``value`` as an int >= 1, else `ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def prepare(matrix: TemplateMatrix, probes: np.ndarray, k: int) -> np.ndarray:
    """Validate ``k`` and the gallery, and return the probes as float32 unit rows."""
    check_positive("k", k)
    if matrix.num_templates == 0:
        raise EmptyGalleryError("the gallery has no templates: enroll identities before searching")
    return matrix.check_probes(probes)


def range_candidates(
    probes: np.ndarray, matrix: TemplateMatrix, lo: int, hi: int, k: int, block_bytes: int, probe_base: int = 0
) -> Candidates:
    """Kernel candidates over identities ``lo..hi-1`` with global identity (and probe) indices."""
    off = matrix.offsets
    c = kernel_candidates(
        probes, matrix.vectors[off[lo] : off[hi]], off[lo : hi + 1] - off[lo], k, block_bytes=block_bytes
    )
    band = None if c.band is None else (c.band[0] + probe_base, c.band[1] + off[lo], c.band[2])
    return Candidates(c.probe + probe_base, c.identity + lo, c.score, c.evaluations, band)


def kernel_result(matrix: TemplateMatrix, probes: np.ndarray, parts: list[Candidates], k: int) -> SearchResult:
    """Merge kernel candidate sets, re-score them exactly and keep the best ``k``."""
    evals = sum(c.evaluations for c in parts)
    if k == 1 and parts and all(c.band is not None for c in parts):
        band = tuple(np.concatenate(a) for a in zip(*(c.band for c in parts)))
        top = exact_top1(probes, matrix.vectors, matrix.offsets, matrix.template_ids, band)
        if top is not None:  # re-score only the band rows, not every template of a candidate
            ids, dist, tids, ev = top
            return SearchResult(identities=ids, distances=dist, template_ids=tids, distance_evaluations=evals + ev)
    cands = candidate_matrix(parts, probes.shape[0], k, matrix.dim)
    return exact_result(matrix, probes, cands, k, evals)


def exact_result(
    matrix: TemplateMatrix, probes: np.ndarray, candidates: np.ndarray, k: int, evaluations: int
) -> SearchResult:
    """Re-score ``candidates`` exactly, keep the best ``k`` and wrap them in a `SearchResult`."""
    sims, rows, ev = exact_scores(probes, matrix.vectors, matrix.offsets, candidates)
    ids, dist, tids = finalize(candidates, sims, rows, k, matrix.template_ids)
    return SearchResult(identities=ids, distances=dist, template_ids=tids, distance_evaluations=evaluations + ev)
