"""On-disk crop cache: one ``.npz`` per (file content hash, crop parameters).

The key is ``sha256(file bytes)`` + ``sha256(sorted JSON of the parameters + CACHE_VERSION)``,
so renaming a file keeps its entry and changing ``size``/``margin``/``detector`` misses. Writes
are atomic (temporary file in the same folder, then ``os.replace``); an unreadable or
inconsistent entry is logged, deleted and recomputed by the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CropCache", "CACHE_VERSION"]

log = logging.getLogger(__name__)

#: Bump when crop geometry changes, so old entries are not reused.
CACHE_VERSION = 1


class CropCache:
    """A directory of ``<key>.npz`` files holding the crops of one image under one setting."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(data: bytes, params: dict) -> str:
        content = hashlib.sha256(data).hexdigest()[:32]
        p = json.dumps({**params, "_v": CACHE_VERSION}, sort_keys=True)
        return f"{content}-{hashlib.sha256(p.encode()).hexdigest()[:16]}"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str, *, source: str = ""):
        """The cached ``list[FaceCrop]`` (``source`` filled in) or ``None`` on a miss/corrupt entry."""
        from hybridface.faces.crop import FaceCrop

        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                images, boxes, scores, lms = z["images"], z["boxes"], z["scores"], z["landmarks"]
            n = len(images)
            if not (images.ndim == 4 and images.dtype == np.uint8 and boxes.shape == (n, 4) and scores.shape == (n,)):
                raise ValueError(f"inconsistent arrays {images.shape} {boxes.shape} {scores.shape}")
            return [
                FaceCrop(
                    image=np.ascontiguousarray(images[i]),
                    box=tuple(int(v) for v in boxes[i]),  # type: ignore[arg-type]
                    score=float(scores[i]),
                    landmarks=None if np.isnan(lms[i]).any() else lms[i].astype(np.float32),
                    source=source,
                )
                for i in range(n)
            ]
        except Exception as exc:  # noqa: BLE001 - any damage means: recompute
            log.warning("crop cache entry %s is corrupt (%s); recomputing", path, exc)
            try:
                path.unlink()
            except OSError:
                pass
            return None

    def put(self, key: str, crops) -> None:
        """Store ``crops`` atomically; failures to write are logged, never raised."""
        path = self._path(key)
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
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, images=images, boxes=boxes, scores=scores, landmarks=lms)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("could not write crop cache entry %s: %s", path, exc)
