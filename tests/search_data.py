"""Shared test data for the search tests: a clustered synthetic gallery and an exact-equality check."""

from __future__ import annotations

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix


def clustered(m: int, per: int, n_probes: int, d: int = 16, seed: int = 0, noise: float = 0.25):
    """``m`` identities × ``per`` templates around random centres, and ``n_probes`` probes near them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((m, d))
    x = np.repeat(centres, per, axis=0) + noise * rng.standard_normal((m * per, d))
    probes = centres[rng.integers(0, m, n_probes)] + noise * rng.standard_normal((n_probes, d))
    names = [f"id{i:04d}" for i in range(m) for _ in range(per)]
    return TemplateMatrix.from_arrays(x.astype(np.float32), names, model_id="t"), probes.astype(np.float32)


def assert_same(a, b) -> None:
    """Two search results are identical (identities, distances, template ids)."""
    np.testing.assert_array_equal(a.identities, b.identities)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.template_ids, b.template_ids)
