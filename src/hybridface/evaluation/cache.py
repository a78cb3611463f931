"""Resumable on-disk template cache of the evaluation harness.

One folder per model id; each encoded batch is appended as its own ``chunk-*.npz`` (keys +
vectors), written atomically by :func:`hybridface.cache.atomic_savez` (no temporary file is left
behind when a write fails), so an interrupted run keeps every finished
batch and a rerun encodes only what is missing. A key is the hash of (image content hash,
augmentation variant and seed, crop parameters); the model id is the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybridface.cache import atomic_savez
from hybridface.hashing import file_sha256

log = logging.getLogger(__name__)


content_hash = file_sha256  # SHA-256 (hex) of a file's bytes


def template_key(image_hash: str, variant: int, seed: int, crop: dict) -> str:
    """Cache key of one template (the model id is the cache folder)."""
    blob = json.dumps([image_hash, int(variant), int(seed), crop], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class TemplateCache:
    """Templates of one model, keyed by `template_key`, persisted as append-only chunks."""

    def __init__(self, root: str | Path, model_id: str, dim: int) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id)[:120] or "model"
        self.dir = Path(root) / "templates" / safe
        self.dim = int(dim)
        self._store: dict[str, np.ndarray] = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        for chunk in sorted(self.dir.glob("chunk-*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
            except Exception as exc:  # a torn file from a killed run: drop it, re-encode
                log.warning("ignoring unreadable cache chunk %s (%s)", chunk, exc)
                continue
            if vecs.ndim != 2 or vecs.shape[1] != self.dim:
                log.warning("ignoring cache chunk %s of dimension %s (expected %d)", chunk, vecs.shape, self.dim)
                continue
            self._store.update(zip(keys.tolist(), vecs))
        log.debug("template cache %s: %d templates", self.dir, len(self._store))

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def get(self, key: str) -> np.ndarray | None:
        return self._store.get(key)

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add a batch and persist it as one chunk."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError("one key per vector")
        if not len(keys):
            return
        name = f"chunk-{len(list(self.dir.glob('chunk-*.npz'))):06d}-{hashlib.sha1(''.join(keys).encode()).hexdigest()[:8]}.npz"
        atomic_savez(self.dir / name, keys=np.asarray(keys, dtype="U32"), vectors=vectors)
        self._store.update(zip(keys, vectors))
