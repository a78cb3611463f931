"""The `Searcher` protocol and the `SearchResult` every strategy returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SearchResult:
    """Top-k identities per probe, best first (faiss-style ``(D, I)`` with extras).

    Attributes:
        identities: ``(n, k)`` int64 identity index into ``TemplateMatrix.names``; ``-1`` = none.
        distances: ``(n, k)`` float32 cosine distances ``1 - cos``; ``inf`` where there is none.
        template_ids: ``(n, k)`` int64 id of the best-matching template of that identity; ``-1``.
        distance_evaluations: number of probe-vector distance computations made (for benchmarks).
    """

    identities: np.ndarray
    distances: np.ndarray
    template_ids: np.ndarray
    distance_evaluations: int = 0

    def __len__(self) -> int:
        return int(self.identities.shape[0])


@runtime_checkable
class Searcher(Protocol):
    """An identification strategy over a `TemplateMatrix`.

    ``search(probes, k)`` ranks *identities* (not templates): each identity's distance is the
    minimum cosine distance over its templates; the k best identities are returned per probe.
    Probes are ``(n, d)`` float32; they are L2-normalised by the searcher if they are not.
    """

    def search(self, probes: np.ndarray, k: int = 1) -> SearchResult:
        ...
