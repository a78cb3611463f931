"""The one preprocessing function shared by training, the PyTorch encoder and the ONNX encoder.

``preprocess(batch_uint8, spec)`` turns a uint8 RGB batch ``(n, H, W, 3)`` into the network's
float32 NCHW input ``(n, 3, S, S)``: resize to ``S x S`` (``cv2.INTER_AREA``) when needed →
channel handling (``grey3``: RGB → grey → three equal channels, the default because Extended Yale
B and ORL are grey and the paper's weights were trained that way; ``rgb``: keep colour) →
optional illumination normalisation of the grey level (``none | hist_eq | clahe | tan_triggs``)
→ scale ``x * spec.scale`` (``1/255``). Optional ``denoise``: ``median3`` runs a 3x3 median
filter on every resized image first (it removes salt-and-pepper noise and halves Gaussian noise
before the illumination step, whose difference of Gaussians would amplify it); ``auto`` runs it
only on a noisy image, at its input resolution, before the resize (:func:`noise_sigma` above
`AUTO_NOISE_SIGMA`), so clean images keep their detail. The spec is recorded in every model card, so a model is
always fed the way it was trained.

``tan_triggs`` is the preprocessing chain of Tan & Triggs (IEEE TIP 2010), vectorised over the
batch: gamma 0.2 → difference of Gaussians (σ0 = 1, σ1 = 2) → two-stage contrast equalisation
(α = 0.1, τ = 10) → ``τ·tanh(I/τ)`` → per-image min-max to [0, 1], then ``x * 255 * spec.scale``
(so the default scale gives [0, 1], like the other methods). It is invariant to a global
multiplicative brightness change (gamma makes it a constant factor, the DoG is linear and the
equalisation divides it out) and removes most of the shading that makes Extended Yale B hard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hybridface.errors import ConfigError

__all__ = ["PreprocessSpec", "preprocess", "to_batch", "tan_triggs", "CHANNELS", "ILLUMINATION", "DENOISE"]

CHANNELS = ("grey3", "rgb")
ILLUMINATION = ("none", "hist_eq", "clahe", "tan_triggs")
DENOISE = ("none", "median3", "auto")
#: ``denoise="auto"`` filters an image whose estimated noise (grey levels, at its input size) is above
#: this. Extended Yale B crops: clean, rotated, scaled, blurred or shifted at most 1.4; with Gaussian
#: noise σ = 10 at least 5.3; salt-and-pepper 2 % at least 8.1.
AUTO_NOISE_SIGMA = 3.0
#: :func:`noise_sigma`'s mask: the difference of two Laplacians, which cancels smooth image structure
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)

#: Tan & Triggs (2010) parameters: gamma, DoG sigmas, equalisation alpha and tau.
TT_GAMMA, TT_SIGMA0, TT_SIGMA1, TT_ALPHA, TT_TAU = 0.2, 1.0, 2.0, 0.1, 10.0


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw pixels become network input (stored as ``preprocessing`` in the model card)."""

    input_size: int = 60
    channels: str = "grey3"
    illumination: str = "none"
    scale: float = 1.0 / 255.0
    denoise: str = "none"

    def __post_init__(self) -> None:
        if self.channels not in CHANNELS:
            raise ConfigError(f"unknown channel handling {self.channels!r}; use one of {', '.join(CHANNELS)}")
        if self.illumination not in ILLUMINATION:
            raise ConfigError(
                f"unknown illumination normalisation {self.illumination!r}; use one of {', '.join(ILLUMINATION)}")
        if self.denoise not in DENOISE:
            raise ConfigError(f"unknown denoising {self.denoise!r}; use one of {', '.join(DENOISE)}")
        if int(self.input_size) < 8:
            raise ConfigError(f"input_size must be >= 8, got {self.input_size}")
        if not float(self.scale) > 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["denoise"] == "none":  # omitted at its default: cards and cache keys made before it stay valid
            del d["denoise"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        known = {k: d[k] for k in ("input_size", "channels", "illumination", "scale", "denoise") if k in d}
        return cls(**known)


def to_batch(images: Any) -> np.ndarray:
    """Validate a uint8 image batch: ``(n, H, W, 3)`` RGB or grey ``(n, H, W)`` (→ three equal channels)."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ConfigError(f"images must be a uint8 array (n, H, W, 3) RGB, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 3:
        raise ConfigError(
            f"ambiguous image array of shape {arr.shape}: pass a batch (n, H, W, 3) — use images[None] for one image")
    if arr.ndim == 3:  # grey batch (n, H, W)
        arr = np.repeat(arr[..., None], 3, axis=3)
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ConfigError(f"images must have shape (n, H, W, 3) RGB uint8, got {arr.shape}")
    if arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ConfigError(f"images of {arr.shape[2]}x{arr.shape[1]} pixels are too small to encode")
    return arr


def _illuminate(grey: np.ndarray, method: str, clahe) -> np.ndarray:
    import cv2

    if method == "hist_eq":
        return cv2.equalizeHist(grey)
    if method == "clahe":
        return clahe.apply(grey)
    return grey


def _blur(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of every ``(S, S)`` plane of ``stack (S, S, m)`` (cv2, ≤ 512 channels per call)."""
    import cv2

    out = np.empty_like(stack)
    for j in range(0, stack.shape[2], 512):
        part = np.ascontiguousarray(stack[:, :, j:j + 512])
        out[:, :, j:j + 512] = cv2.GaussianBlur(part, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).reshape(part.shape)
    return out


def tan_triggs(planes: np.ndarray) -> np.ndarray:
    """Tan & Triggs (2010) illumination normalisation of uint8 ``(m, S, S)`` planes → float32 in [0, 1]."""
    x = np.asarray(planes, dtype=np.float32)
    if x.ndim != 3:
        raise ConfigError(f"tan_triggs expects (m, H, W) grey planes, got shape {x.shape}")
    if len(x) == 0:
        return x.copy()
    x = np.power(x / np.float32(255.0), np.float32(TT_GAMMA))
    stack = np.ascontiguousarray(x.transpose(1, 2, 0))  # (S, S, m): cv2 blurs each channel
    dog = (_blur(stack, TT_SIGMA0) - _blur(stack, TT_SIGMA1)).transpose(2, 0, 1)
    a, tau, eps = np.float32(TT_ALPHA), np.float32(TT_TAU), np.float32(1e-12)
    dog = dog / np.maximum(np.mean(np.abs(dog) ** a, axis=(1, 2), keepdims=True) ** (1 / a), eps)
    dog = dog / np.maximum(np.mean(np.minimum(np.abs(dog), tau) ** a, axis=(1, 2), keepdims=True) ** (1 / a), eps)
    y = tau * np.tanh(dog / tau)
    lo = y.min(axis=(1, 2), keepdims=True)
    span = y.max(axis=(1, 2), keepdims=True) - lo
    y = np.where(span > 0, (y - lo) / np.maximum(span, eps), np.float32(0.5))  # a flat image → mid-grey
    return y.astype(np.float32, copy=False)


def noise_sigma(image: np.ndarray) -> float:
    """Immerkær's fast estimate (CVIU 1996) of the standard deviation of additive noise in a uint8
    RGB (or grey) image, in grey levels: the mean absolute response of a Laplacian difference that
    cancels smooth image structure."""
    import cv2

    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    if min(g.shape) < 3:
        return 0.0
    r = cv2.filter2D(np.ascontiguousarray(g, dtype=np.float32), -1, _NOISE_KERNEL)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6)


def preprocess(images: Any, spec: PreprocessSpec | None = None) -> np.ndarray:
    """uint8 ``(n, H, W, 3)`` RGB → float32 C-contiguous ``(n, 3, S, S)`` per ``spec``."""
    import cv2

    spec = spec or PreprocessSpec()
    batch = to_batch(images)
    n, h, w, _ = batch.shape
    s = int(spec.input_size)
    out = np.empty((n, s, s, 3), dtype=np.uint8)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)) if spec.illumination == "clahe" else None
    tt = spec.illumination == "tan_triggs"
    per_image = "none" if tt else spec.illumination
    for i in range(n):
        img = batch[i]
        if spec.denoise == "auto" and noise_sigma(img) > AUTO_NOISE_SIGMA:
            img = cv2.medianBlur(np.ascontiguousarray(img), 3)
        if (h, w) != (s, s):
            img = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
        if spec.denoise == "median3":
            img = cv2.medianBlur(np.ascontiguousarray(img), 3)
        if spec.channels == "grey3":
            g = _illuminate(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), per_image, clahe)
            out[i] = g[:, :, None]
        elif per_image != "none":
            ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
            ycc[:, :, 0] = _illuminate(np.ascontiguousarray(ycc[:, :, 0]), per_image, clahe)
            out[i] = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
        else:
            out[i] = img
    if tt:
        if spec.channels == "grey3":  # one plane per image, repeated
            x = np.repeat(tan_triggs(out[:, :, :, 0])[:, None], 3, axis=1)
        else:  # each colour channel normalised on its own
            x = tan_triggs(out.transpose(0, 3, 1, 2).reshape(n * 3, s, s)).reshape(n, 3, s, s)
        x *= np.float32(255.0 * spec.scale)
        return np.ascontiguousarray(x, dtype=np.float32)
    x = out.transpose(0, 3, 1, 2).astype(np.float32)
    x *= np.float32(spec.scale)
    return np.ascontiguousarray(x)
