"""On-disk crop cache: one ``.npz`` per (file content hash, crop parameters).

The key is ``sha256(file bytes)`` + ``sha256(sorted JSON of the parameters + CACHE_VERSION)``,
so renaming a file keeps its entry and changing ``size``/``margin``/``detector`` misses. Entries
live in a :class:`hybridface.cache.NpzCache` (sharded folder, atomic writes); an unreadable or
inconsistent entry is logged, deleted and recomputed by the caller.

Entries are plain arrays (``images``, ``boxes``, ``scores``, ``landmarks``): turning them into
`FaceCrop` records is :mod:`hybridface.faces.crop`'s job, so this module imports nothing above it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.cache import NpzCache

__all__ = ["CropCache", "CACHE_VERSION", "CachedCrops"]

log = logging.getLogger(__name__)

#: Bump when crop geometry or a detector changes, so old entries are not reused
#: (2: ``cascade`` gained its dlib CNN fallback stage).
CACHE_VERSION = 2

#: One cached image's crops: ``(images (n, s, s, 3) uint8, boxes (n, 4), scores (n,), landmarks (n, 2, 2) | NaN)``.
CachedCrops = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _check(z: dict[str, np.ndarray]) -> str | None:
    images, boxes, scores = z["images"], z["boxes"], z["scores"]
    n = len(images)
    ok = images.ndim == 4 and images.dtype == np.uint8 and boxes.shape == (n, 4) and scores.shape == (n,)
    return None if ok and z["landmarks"].shape == (n, 2, 2) else \
        f"inconsistent arrays {images.shape} {boxes.shape} {scores.shape}"


class CropCache:
    """A directory of ``<key>.npz`` files holding the crops of one image under one setting."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._store = NpzCache(self.directory)

    @staticmethod
    def key(data: bytes, params: dict) -> str:
        content = hashlib.sha256(data).hexdigest()[:32]
        p = json.dumps({**params, "_v": CACHE_VERSION}, sort_keys=True)
        return f"{content}-{hashlib.sha256(p.encode()).hexdigest()[:16]}"

    def _path(self, key: str) -> Path:
        return self._store.path(key)

    def get(self, key: str) -> CachedCrops | None:
        """The cached arrays, or ``None`` on a miss or a corrupt entry (removed)."""
        z = self._store.load(key, check=_check, what="crop cache entry")
        return None if z is None else (z["images"], z["boxes"], z["scores"], z["landmarks"])

    def put(self, key: str, crops: Any) -> None:
        """Store ``crops`` (objects with ``image``, ``box``, ``score``, ``landmarks``); a failed
        write is logged, never raised."""
        n = len(crops)
        size = crops[0].image.shape[0] if n else 0
        images = np.stack([c.image for c in crops]) if n else np.zeros((0, size, size, 3), np.uint8)
        boxes = np.array([c.box for c in crops], np.int64).reshape(n, 4)
        scores = np.array([c.score for c in crops], np.float64).reshape(n)
        lms = np.full((n, 2, 2), np.nan, np.float32)
        for i, c in enumerate(crops):
            if c.landmarks is not None:
                lms[i] = np.asarray(c.landmarks, np.float32)[:2]
        try:
            self._store.save(key, images=images, boxes=boxes, scores=scores, landmarks=lms)
        except OSError as exc:
            log.warning("could not write crop cache entry %s: %s", self._path(key), exc)
