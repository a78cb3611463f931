"""The one `Encoder` protocol every feature extractor implements."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Protocol, Union, runtime_checkable

import numpy as np

from hybridface.vectors import l2_normalize

__all__ = ["Encoder", "ImageBatch", "l2_normalize"]

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
