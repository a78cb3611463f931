"""Aligned face chips from 5 landmarks, as dlib's ``get_face_chip`` cuts them (NumPy).

``get_face_chip_details`` (``dlib/image_transforms/interpolation.h``): the similarity transform
(Umeyama) from dlib's mean 5-point face, padded by ``padding`` and scaled to ``size``, onto the
landmarks gives an angle and a scale; the chip rectangle is centred on the image of the chip
centre with side ``size * scale``. ``extract_image_chip`` maps the chip's corners onto that
rectangle rotated by the angle and samples bilinearly (0 outside the image, values truncated
to uint8). When the face is more than twice the chip size dlib first shrinks the image with
its own pyramid; this port then shrinks with OpenCV's ``INTER_AREA`` instead (close, not exact).
"""

from __future__ import annotations

import math

import numpy as np

from hybridface.errors import ConfigError
from hybridface.models.landmarks import similarity

#: dlib's mean face for the 5-point model (right eye outer/inner, left eye outer/inner, nose).
MEAN_FACE_5 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])


def chip_geometry(landmarks: np.ndarray, *, size: int = 150, padding: float = 0.25) -> tuple[np.ndarray, float, float]:
    """``(centre (x, y), half side, angle)`` of the chip rectangle in the image."""
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (5, 2):
        raise ConfigError(f"landmarks must be (5, 2) (x, y) points, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ConfigError("landmarks must be finite (x, y) pixel coordinates; got NaN or inf")
    src = (padding + MEAN_FACE_5) / (2 * padding + 1) * size
    a, t = similarity(src, pts)
    p = a @ np.array([1.0, 0.0])
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    centre = a @ np.array([size / 2.0, size / 2.0]) + t
    return centre, (size * scale - 1) / 2, angle


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc, tc = np.clip(left, 0, w - 2), np.clip(top, 0, h - 2)
    fx, fy = (x - left)[..., None], (y - top)[..., None]
    f = img.astype(np.float64)
    tl, tr = f[tc, lc], f[tc, lc + 1]
    bl, br = f[tc + 1, lc], f[tc + 1, lc + 1]
    v = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    out = np.clip(v, 0, 255).astype(np.uint8)  # dlib's assign_pixel truncates
    out[~ok] = 0
    return out


def face_chip(image: np.ndarray, landmarks: np.ndarray, *, size: int = 150, padding: float = 0.25,
              compiled: bool = True) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 chip of one RGB image given its 5 landmarks.

    ``compiled`` samples with the Numba kernel (`hybridface.models.align_kernels`, bit-identical);
    ``False``, or Numba missing, with NumPy.
    """
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(f"image must be uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
    centre, half, angle = chip_geometry(landmarks, size=size, padding=padding)
    shrink = 1.0
    while (2 * half + 1) * shrink / 2 > size:  # dlib would pick a pyramid level here
        shrink /= 2
    if shrink != 1.0:
        img = cv2.resize(img, (max(1, round(img.shape[1] * shrink)), max(1, round(img.shape[0] * shrink))),
                         interpolation=cv2.INTER_AREA)
        centre, half = centre * shrink, half * shrink
    c, s = math.cos(angle), math.sin(angle)
    u = np.arange(size, dtype=np.float64) / (size - 1) * 2 * half - half  # chip pixel → rect offset
    if compiled:
        from hybridface.models.align_kernels import kernel

        sample = kernel("chip_sample")
        if sample is not None:
            out = np.empty((size, size, 3), np.uint8)
            sample(img, float(centre[0]), float(centre[1]), c, s, u, out)
            return out
    ux, uy = np.meshgrid(u, u)
    x = centre[0] + c * ux - s * uy
    y = centre[1] + s * ux + c * uy
    return _bilinear(img, x, y)


def face_chips(images, landmarks: np.ndarray, *, size: int = 150, padding: float = 0.25,
               compiled: bool = True) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 chips of ``images[i]`` with ``landmarks[i]`` ``(5, 2)`` (see `face_chip`)."""
    landmarks = np.asarray(landmarks)
    if landmarks.ndim != 3 or len(landmarks) != len(images):
        raise ConfigError(f"landmarks must be (n, 5, 2), one set per image; got {landmarks.shape}")
    if len(images) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([face_chip(img, lm, size=size, padding=padding, compiled=compiled)
                     for img, lm in zip(images, landmarks)])
