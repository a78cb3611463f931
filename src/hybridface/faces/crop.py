"""Turn an image into 60x60 face crops: :func:`extract_faces` (one image) and :func:`load_crops` (many files).

Policies (``detect=``):

``never``
    the image already is a face crop (Extended Yale B, ORL): centre square → ``size`` x ``size``.
``always`` / ``largest``
    detect and keep the largest face; :class:`~hybridface.errors.NoFaceError` naming the source if none.
``all``
    every detected face, largest first; ``[]`` if none.

A detected box is made square around its centre with side ``max(w, h) * (1 + 2 * margin)``
(``margin`` is added on each side, as a fraction of the box), rotated so the eye line is level when the
detector gives eye landmarks, and resized with ``cv2.INTER_AREA``. Image borders are padded by
edge replication so a face at the edge still gives a full crop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, HybridFaceError, ImageDecodeError, NoFaceError

__all__ = ["FaceCrop", "CropOutcome", "extract_faces", "load_crops", "square_crop", "DETECT_POLICIES"]

log = logging.getLogger(__name__)

DETECT_POLICIES = ("never", "always", "largest", "all")


@dataclass(frozen=True)
class FaceCrop:
    """One face, ready for the encoder.

    ``image`` is ``(size, size, 3)`` uint8 RGB; ``box`` is ``(x, y, w, h)`` in source pixels (the
    detector's box, or the centre square for ``detect="never"``); ``landmarks`` is a ``(2, 2)``
    float32 array ``[[left_eye_x, y], [right_eye_x, y]]`` (image left/right) or ``None``.
    """

    image: np.ndarray
    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None
    source: str = ""


@dataclass(frozen=True)
class CropOutcome:
    """Result of cropping one file in a batch: exactly one of ``crop`` / ``error`` is set
    (both ``None`` only for ``detect="all"`` with no face, reported as ``status="no_face"``)."""

    path: str
    crop: FaceCrop | None
    error: HybridFaceError | None = None
    crops: tuple[FaceCrop, ...] = ()

    @property
    def status(self) -> str:
        if self.error is not None:
            return getattr(self.error, "code", "error")
        return "ok" if self.crop is not None else "no_face"


def _check_policy(detect: str) -> None:
    if detect not in DETECT_POLICIES:
        raise ConfigError(f"detect={detect!r} is not a policy; use one of {', '.join(DETECT_POLICIES)}")


def _check_detector(detector: str) -> None:
    from hybridface.faces.detect import DETECTORS

    if detector not in DETECTORS:
        raise ConfigError(f"detector={detector!r} is not known; use one of {', '.join(DETECTORS)}")


def _as_rgb(image: np.ndarray, source: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError(f"{source or '<array>'}: expected an (H, W, 3) image, got shape {np.shape(image)}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def square_crop(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    size: int = 60,
    margin: float = 0.2,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Square crop around ``box`` (x, y, w, h) enlarged by ``margin``, eye-levelled when
    ``landmarks`` (left eye, right eye) are given, resized to ``size`` with area interpolation."""
    import cv2

    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    side = max(side, 1.0)
    angle = 0.0
    if landmarks is not None:
        (lx, ly), (rx, ry) = np.asarray(landmarks, dtype=np.float64)[:2]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
    if abs(angle) > 0.5:
        # Rotate about the box centre so the eye line is level, then cut the square.
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[0, 2] += side / 2.0 - cx
        m[1, 2] += side / 2.0 - cy
        n = int(round(side))
        patch = cv2.warpAffine(image, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
        n = int(round(side))
        hh, ww = image.shape[:2]
        pad = max(0, -x0, -y0, x0 + n - ww, y0 + n - hh)
        src = image
        if pad:
            src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        patch = src[y0 + pad : y0 + pad + n, x0 + pad : x0 + pad + n]
    interp = cv2.INTER_AREA if patch.shape[0] >= size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interp))


def _whole_image_crop(image: np.ndarray, *, size: int, source: str) -> FaceCrop:
    hh, ww = image.shape[:2]
    side = min(hh, ww)
    x0, y0 = (ww - side) // 2, (hh - side) // 2
    import cv2

    patch = image[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    out = np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interp))
    return FaceCrop(image=out, box=(int(x0), int(y0), int(side), int(side)), score=1.0, landmarks=None, source=source)


def extract_faces(
    image: np.ndarray | str | Path | bytes,
    *,
    detect: str = "never",
    detector: str = "cascade",
    size: int = 60,
    margin: float = 0.2,
    source: str = "",
) -> list[FaceCrop]:
    """Face crops of one image (array, path or encoded bytes) under policy ``detect``.

    Returns one crop for ``never``/``always``/``largest``, all faces (largest first, maybe ``[]``)
    for ``all``. Raises :class:`NoFaceError` (naming ``source``) for ``always``/``largest`` with
    no face, :class:`ImageDecodeError` for unreadable input, :class:`ConfigError` for bad options.
    """
    _check_policy(detect)
    if int(size) < 1:
        raise ConfigError(f"size={size!r} must be a positive number of pixels")
    if not (0.0 <= float(margin) <= 2.0):
        raise ConfigError(f"margin={margin!r} must be between 0 and 2")
    if isinstance(image, (str, Path, bytes, bytearray, memoryview)):
        from hybridface.faces.io import load_image

        if not source and isinstance(image, (str, Path)):
            source = str(image)
        image = load_image(image, name=source or None)
    rgb = _as_rgb(image, source)
    if detect == "never":
        return [_whole_image_crop(rgb, size=int(size), source=source)]

    from hybridface.faces.detect import detect_faces

    dets = detect_faces(rgb, detector=detector)
    dets = sorted(dets, key=lambda d: d.box[2] * d.box[3], reverse=True)
    if not dets:
        if detect == "all":
            return []
        raise NoFaceError(
            f"{source or '<image>'}: no face found by detector {detector!r}; "
            "use a clearer frontal photo, another --detector, or detect='never' if it is already a face crop"
        )
    if detect in ("always", "largest"):
        dets = dets[:1]
    return [
        FaceCrop(
            image=square_crop(rgb, d.box, size=int(size), margin=float(margin), landmarks=d.landmarks),
            box=tuple(int(round(v)) for v in d.box),  # type: ignore[arg-type]
            score=float(d.score),
            landmarks=d.landmarks,
            source=source,
        )
        for d in dets
    ]


def _crops_of(path: str, cache, params: dict) -> list[FaceCrop]:
    """Crops of one file, through the cache when there is one (a no-face result is cached too)."""
    if cache is None:
        return extract_faces(path, source=path, **params)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc})") from exc
    key = cache.key(data, params)
    hit = cache.get(key)
    crops = None if hit is None else [
        FaceCrop(image=np.ascontiguousarray(img), box=tuple(int(v) for v in box), score=float(score),  # type: ignore[arg-type]
                 landmarks=None if np.isnan(lm).any() else lm.astype(np.float32), source=path)
        for img, box, score, lm in zip(*hit)]
    if crops is None:
        try:
            crops = extract_faces(data, source=path, **params)
        except NoFaceError:
            cache.put(key, [])
            raise
        cache.put(key, crops)
    if not crops and params["detect"] in ("always", "largest"):
        raise NoFaceError(f"{path}: no face found by detector {params['detector']!r} (cached result)")
    return crops


def load_crops(
    paths: Iterable[str | Path],
    *,
    detect: str = "never",
    detector: str = "cascade",
    size: int = 60,
    margin: float = 0.2,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> list[CropOutcome]:
    """Crop many files; one outcome per path, in order. A bad file becomes an outcome with
    ``error`` set (logged), never an exception that aborts the batch. With ``cache_dir``,
    crops are cached by file content hash + crop parameters (see :mod:`hybridface.faces.cache`)."""
    _check_policy(detect)
    _check_detector(detector)
    paths = [str(p) for p in paths]
    cache = None
    if cache_dir is not None:
        from hybridface.faces.cache import CropCache

        cache = CropCache(cache_dir)
    it: Sequence[str] | Iterable[str] = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc="faces", unit="img")
    out: list[CropOutcome] = []
    params = {"detect": detect, "detector": detector, "size": int(size), "margin": float(margin)}
    seen: dict[str, CropOutcome] = {}  # a path listed many times (augmented variants) is cropped once
    for p in it:
        if p in seen:
            out.append(seen[p])
            continue
        try:
            crops = _crops_of(p, cache, params)
            out.append(CropOutcome(path=p, crop=crops[0] if crops else None, crops=tuple(crops)))
        except HybridFaceError as exc:
            log.warning("skipping: %s", exc)
            out.append(CropOutcome(path=p, crop=None, error=exc))
        except Exception as exc:  # noqa: BLE001 - one bad file never aborts the batch
            err = ImageDecodeError(f"{p}: could not be processed ({type(exc).__name__}: {exc})")
            log.warning("skipping: %s", err)
            out.append(CropOutcome(path=p, crop=None, error=err))
        seen[p] = out[-1]
    return out
