"""Content hashes of files (model ids, cache keys): one implementation for the whole package."""

from __future__ import annotations

import hashlib
from os import PathLike


def file_sha256(path: str | PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
