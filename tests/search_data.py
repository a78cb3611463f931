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


def vector_gallery(path, *, per: int):
    """A gallery file at ``path`` holding ``clustered(40, 3, per, d=60)`` templates; ``(gallery, probes)``."""
    from hybridface import api

    matrix, probes = clustered(40, 3, per, d=60, seed=5, noise=0.2)
    g = api.open_gallery(path, create=True)
    for i, name in enumerate(matrix.names):
        g.enroll_vectors(name, matrix.vectors[matrix.rows(i)], model_id="vec")
    return g, probes


def face_folders(root):
    """4 synthetic identities: 2 gallery images each in ``root/faces/<id>/``, 1 probe each in
    ``root/probes/`` (random 60x60 textures plus noise: plumbing, not recognition)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    data, probes = root / "faces", root / "probes"
    probes.mkdir(parents=True)
    for name in ("ann", "bob", "cid", "dan"):
        (data / name).mkdir(parents=True)
        base = rng.integers(0, 256, size=(60, 60, 3)).astype(np.float32)
        for j in range(3):
            img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save((data / name if j < 2 else probes) / f"{name}{j}.png")
    return data, probes


def assert_same(a, b) -> None:
    """Two search results are identical (identities, distances, template ids)."""
    np.testing.assert_array_equal(a.identities, b.identities)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.template_ids, b.template_ids)
