"""The one `Encoder` protocol every feature extractor implements, and the image batch it accepts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Protocol, Union, runtime_checkable

import numpy as np

from hybridface.errors import ConfigError
from hybridface.vectors import l2_normalize

__all__ = ["Encoder", "ImageBatch", "l2_normalize", "to_uint8_batch"]

#: What `Encoder.encode` accepts: a uint8 batch ``(n, H, W, 3)`` (RGB) or a list of image paths.
ImageBatch = Union[np.ndarray, Sequence[Union[str, PathLike]]]


@runtime_checkable
class Encoder(Protocol):
    """Turns face images into L2-normalised templates.

    Attributes:
        model_id: content hash (or stable name) of the weights; galleries refuse other ids.
        dim: embedding dimension ``d``.
        input_size: ``(height, width)`` the network takes; other sizes are resized by the encoder.
    """

    model_id: str
    dim: int
    input_size: tuple[int, int]

    def encode(self, images: ImageBatch) -> np.ndarray:
        """Return ``(n, dim)`` float32, C-contiguous, each row of unit L2 norm."""
        ...


def _rgb_uint8(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"each image must be an (H, W, 3) uint8 RGB array, got {img.dtype} {img.shape}")
    return img


def to_uint8_batch(images: ImageBatch, size: tuple[int, int]) -> np.ndarray:
    """Turn a uint8 ``(n, H, W, 3)`` batch or a list of paths / ``(H, W, 3)`` arrays into ``(n, h, w, 3)`` uint8 RGB at ``size``."""
    import cv2

    h, w = size
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ConfigError(f"images must be a (n, H, W, 3) RGB batch, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ConfigError(f"images must be uint8, got {arr.dtype}")
        frames: Iterable[np.ndarray] = arr
    else:
        from hybridface.faces.io import load_image

        frames = [_rgb_uint8(p) if isinstance(p, np.ndarray) else load_image(p) for p in images]
    out = []
    for img in frames:
        if img.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
            img = cv2.resize(img, (w, h), interpolation=interp)
        out.append(img)
    if not out:
        return np.zeros((0, h, w, 3), np.uint8)
    return np.ascontiguousarray(np.stack(out), dtype=np.uint8)
