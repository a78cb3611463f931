"""Test-time flip: a face's template from the image and its mirror image, for any encoder."""

from __future__ import annotations

import numpy as np

from hybridface.vectors import l2_normalize

__all__ = ["FlipEncoder"]


class FlipEncoder:
    """Wrap an `Encoder`: template = L2-normalised sum of the templates of each image and its
    horizontal mirror. The model id gains ``+flip`` so its templates are cached apart."""

    def __init__(self, encoder) -> None:
        self.inner = encoder
        self.model_id = f"{encoder.model_id}+flip"
        self.dim = encoder.dim
        self.input_size = encoder.input_size
        self.has_weights = bool(getattr(encoder, "has_weights", True))

    def encode(self, images) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        both = self.inner.encode(np.ascontiguousarray(np.concatenate([x, x[:, :, ::-1]])))
        n = len(x)
        return l2_normalize(both[:n] + both[n:])
