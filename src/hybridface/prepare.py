"""Image-to-template preparation for the facade: crop mixed inputs (paths, bytes, arrays), encode
the crops in batches, and validate ready-made template vectors."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, HybridFaceError, ImageDecodeError, ModelMismatchError, NoFaceError, OptionError
from hybridface.models.base import Encoder
from hybridface.options import DETECT
from hybridface.vectors import l2_normalize

log = logging.getLogger(__name__)

_ENCODE_BATCH = 512


@dataclass(frozen=True)
class Prepared:
    """One input image after cropping: source name, content hash, 60x60 crop or the error."""

    source: str
    hash: str
    crop: np.ndarray | None = None
    error: HybridFaceError | None = None

    @property
    def status(self) -> str:
        if self.error is None:
            return "ok"
        return "no_face" if isinstance(self.error, NoFaceError) else "error"


def is_vectors(x: Any) -> bool:
    """True when ``x`` is a float array of templates (1-D or 2-D) rather than images."""
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim in (1, 2)


def _check_finite_rows(vectors: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise ConfigError(f"{what} {bad[:5].tolist()} contain NaN or infinite values")


def as_vectors(vectors: Any, dim: int | None = None, *, what: str = "probe vectors") -> np.ndarray:
    """Validate a template batch: 2-D float, finite, ``dim`` columns; returns unit float32 rows."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or (dim is not None and v.shape[1] != dim):
        raise ModelMismatchError(f"{what} have shape {v.shape}, expected (n, {dim}) for this gallery/model")
    _check_finite_rows(v, what)
    return l2_normalize(v)


def vector_hash(vector: np.ndarray) -> str:
    """Duplicate key of a ready-made template: ``v:`` + sha256 of its little-endian float32 bytes."""
    return "v:" + hashlib.sha256(np.asarray(vector, "<f4").tobytes()).hexdigest()


def crop_size(encoder: Encoder) -> int:
    """Side of the square face crop an encoder wants (its input height; 60 for the paper's network)."""
    return int(getattr(encoder, "input_size", (60, 60))[0])


def prepare_images(images: Sequence[Any] | np.ndarray, *, detect: str = "never", detector: str = "cascade",
                   sources: Sequence[str] | None = None, size: int = 60) -> list[Prepared]:
    """Crop each image (path, encoded bytes or uint8 array) to ``size`` x ``size``; bad inputs
    become `Prepared` entries with ``error`` set, never an exception."""
    from hybridface.faces.crop import extract_faces

    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (str, Path, bytes, np.ndarray)):
        images = [images]
    if detect not in DETECT:
        raise OptionError(f"detect={detect!r} is not valid; use one of {', '.join(DETECT)}")
    out: list[Prepared] = []
    for i, img in enumerate(images):
        if isinstance(img, (str, Path)):
            name = str(img)
        elif isinstance(img, (bytes, bytearray)):
            name = f"<bytes #{i}>"
        else:
            name = f"<array #{i}>"
        if sources is not None:
            name = str(sources[i])
        try:
            if isinstance(img, (str, Path)):
                try:
                    data = Path(img).read_bytes()
                except OSError as exc:
                    raise ImageDecodeError(f"{img}: cannot read file ({exc.strerror or exc})") from exc
            elif isinstance(img, (bytes, bytearray)):
                data = bytes(img)
            elif isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim in (2, 3):
                data = None
            else:
                raise ImageDecodeError(f"{name}: not an image (give a path, encoded bytes or a uint8 HxWx3 array)")
            digest = hashlib.sha256(data if data is not None else
                                    repr(img.shape).encode() + np.ascontiguousarray(img).tobytes()).hexdigest()
            src = img if isinstance(img, (str, Path)) else (data if data is not None else img)
            crop = extract_faces(src, detect=detect, detector=detector, size=size, source=name)[0]
            out.append(Prepared(name, digest, crop.image))
        except HybridFaceError as exc:
            log.debug("skipping %s: %s", name, exc)
            out.append(Prepared(name, "", None, exc))
    return out


def encode_crops(encoder: Encoder, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Encode 60x60 crops in batches into ``(n, dim)`` unit float32 templates."""
    if not crops:
        return np.zeros((0, encoder.dim), np.float32)
    parts = [encoder.encode(np.stack(crops[i:i + _ENCODE_BATCH])) for i in range(0, len(crops), _ENCODE_BATCH)]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
