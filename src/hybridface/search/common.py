"""Helpers shared by the four strategies: argument checks and the exact final step."""

from __future__ import annotations

import numpy as np

from hybridface.errors import ConfigError, EmptyGalleryError
from hybridface.gallery.matrix import TemplateMatrix
from hybridface.search.base import SearchResult
from hybridface.search.band import Candidates, candidate_matrix
from hybridface.search.kernels import kernel_candidates
from hybridface.search.rerank import exact_scores, exact_top1, finalize


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
