"""The paper's data augmentation: 17 transformations, so every image gives 18 variants.

``augment(image, variant, seed=...)`` returns a new uint8 image of the same shape. Geometric
variants work about the image centre and fill uncovered pixels by edge replication
(``cv2.BORDER_REPLICATE``), so no black corners appear. Random variants (noise) draw from
``numpy.random.default_rng([seed, variant])``: the same ``(image, variant, seed)`` always gives
the same output, and different seeds give different noise. The other variants ignore ``seed``.

| variant | transformation | parameter |
| ---: | --- | --- |
| 0 | identity (the original) | — |
| 1 | rotation | −15° |
| 2 | rotation | −10° |
| 3 | rotation | −5° |
| 4 | rotation | +5° |
| 5 | rotation | +10° |
| 6 | rotation | +15° |
| 7 | scale (zoom out) | 0.85 |
| 8 | scale (zoom out) | 0.90 |
| 9 | scale (zoom in) | 1.10 |
| 10 | scale (zoom in) | 1.15 |
| 11 | additive Gaussian noise | σ = 10 grey levels |
| 12 | additive Gaussian noise | σ = 20 grey levels |
| 13 | salt-and-pepper noise | 2 % of pixels (half 0, half 255, all channels) |
| 14 | Gaussian blur | σ = 1.5 px |
| 15 | translation | −4 px horizontally (left) |
| 16 | translation | +4 px horizontally (right) |
| 17 | horizontal flip | — |

Rotation angles follow OpenCV's convention (positive = counter-clockwise on screen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError

__all__ = ["augment", "augment_all", "strong_augment", "NUM_VARIANTS", "VARIANTS", "Variant"]


@dataclass(frozen=True)
class Variant:
    """One row of the table above."""

    index: int
    kind: str
    param: float | None
    label: str


VARIANTS: tuple[Variant, ...] = (
    Variant(0, "identity", None, "identity"),
    *(Variant(i + 1, "rotate", a, f"rotate {a:+g}°") for i, a in enumerate((-15, -10, -5, 5, 10, 15))),
    *(Variant(i + 7, "scale", s, f"scale {s:.2f}") for i, s in enumerate((0.85, 0.90, 1.10, 1.15))),
    Variant(11, "gauss_noise", 10.0, "Gaussian noise σ=10"),
    Variant(12, "gauss_noise", 20.0, "Gaussian noise σ=20"),
    Variant(13, "salt_pepper", 0.02, "salt-and-pepper 2 %"),
    Variant(14, "blur", 1.5, "Gaussian blur σ=1.5"),
    Variant(15, "translate", -4.0, "translate −4 px"),
    Variant(16, "translate", 4.0, "translate +4 px"),
    Variant(17, "hflip", None, "horizontal flip"),
)

#: Number of variants per image: the original + 17 transformations.
NUM_VARIANTS = len(VARIANTS)
assert NUM_VARIANTS == 18


def _affine(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def augment(image: np.ndarray, variant: int, *, seed: int = 0) -> np.ndarray:
    """Variant ``variant`` (0..17, see the module table) of a uint8 ``(H, W)`` or ``(H, W, C)`` image."""
    import cv2

    if not isinstance(variant, (int, np.integer)) or not 0 <= int(variant) < NUM_VARIANTS:
        raise ConfigError(f"variant={variant!r} is out of range; use 0..{NUM_VARIANTS - 1}")
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or img.size == 0:
        raise ConfigError(f"augment expects a non-empty uint8 (H, W[, C]) image, got {img.dtype} {img.shape}")
    v = VARIANTS[int(variant)]
    h, w = img.shape[:2]
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    if v.kind == "identity":
        out = img.copy()
    elif v.kind == "rotate":
        out = _affine(img, cv2.getRotationMatrix2D(centre, float(v.param), 1.0))
    elif v.kind == "scale":
        out = _affine(img, cv2.getRotationMatrix2D(centre, 0.0, float(v.param)))
    elif v.kind == "translate":
        out = _affine(img, np.float32([[1, 0, v.param], [0, 1, 0]]))
    elif v.kind == "hflip":
        out = np.ascontiguousarray(img[:, ::-1])
    elif v.kind == "blur":
        out = cv2.GaussianBlur(img, (0, 0), sigmaX=float(v.param), borderType=cv2.BORDER_REPLICATE)
    else:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(variant)])
        if v.kind == "gauss_noise":
            noise = rng.normal(0.0, float(v.param), size=img.shape)
            out = np.clip(img.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)
        else:  # salt_pepper
            out = img.copy()
            u = rng.random(size=(h, w))
            out[u < v.param / 2] = 0
            out[(u >= v.param / 2) & (u < v.param)] = 255
    return np.ascontiguousarray(out.reshape(img.shape).astype(np.uint8, copy=False))


def augment_all(image: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """All 18 variants stacked: ``(18, H, W[, C])`` uint8, index = variant."""
    return np.stack([augment(image, i, seed=seed) for i in range(NUM_VARIANTS)])


def strong_augment(batch: np.ndarray, rng: np.random.Generator, *, p_paper: float = 0.5) -> np.ndarray:
    """Randomly augmented copy of a uint8 ``(n, S, S, 3)`` batch, for training.

    Per image: one of the 17 transformations with probability ``p_paper``, a random crop (80-100 %
    of the side, resized back), brightness/contrast/per-channel colour jitter, a horizontal flip.
    """
    import cv2

    n, s = len(batch), batch.shape[1]
    out = np.empty_like(batch)
    for i in range(n):
        img = batch[i]
        if rng.random() < p_paper:
            img = augment(img, int(rng.integers(1, NUM_VARIANTS)), seed=int(rng.integers(1 << 30)))
        side = int(round(s * rng.uniform(0.8, 1.0)))
        if side < s:
            y, x = rng.integers(0, s - side + 1, size=2)
            img = cv2.resize(np.ascontiguousarray(img[y:y + side, x:x + side]), (s, s), interpolation=cv2.INTER_LINEAR)
        f = img.astype(np.float32)
        gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, size=3)  # brightness × per-channel colour
        mean = f.mean()
        f = (f - mean) * rng.uniform(0.75, 1.25) + mean  # contrast
        f = f * gain + rng.uniform(-20, 20)
        img = np.clip(f, 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        out[i] = img
    return out


def relight(batch: np.ndarray, rng: np.random.Generator, *, p: float = 0.5) -> np.ndarray:
    """Copy of a uint8 ``(n, H, W, 3)`` batch where each image, with probability ``p``, is lit anew.

    The light comes from a random direction: either a smooth exponential ramp (one side up to
    about 12x brighter than the other) or a cast-shadow edge (a sigmoid step down to 5-60 % of
    the light), then a random gamma (0.6-1.7) and exposure (0.4-1.2); one relit image in three
    also turns grey. This is the hard lighting (and the grey camera) of Extended Yale B, which
    faces photographed in daylight do not show.
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"relight: p={p!r} must be in [0, 1]")
    b = np.asarray(batch)
    if b.dtype != np.uint8 or b.ndim != 4 or b.shape[-1] != 3:
        raise ConfigError(f"relight expects a uint8 (n, H, W, 3) batch, got {b.dtype} {b.shape}")
    out = b.copy()
    h, w = b.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5
    for i in range(len(b)):
        if rng.random() >= p:
            continue
        theta = rng.uniform(0, 2 * np.pi)
        proj = np.cos(theta) * xx + np.sin(theta) * yy  # -0.7..0.7 across the chip
        if rng.random() < 0.5:
            gain = np.exp(rng.uniform(0.5, 2.5) * proj)
        else:
            lo = rng.uniform(0.05, 0.6)
            gain = lo + (1 - lo) / (1 + np.exp(-rng.uniform(8, 30) * (proj - rng.uniform(-0.2, 0.2))))
        f = b[i].astype(np.float32) / 255.0 * gain[..., None] / max(float(gain.mean()), 1e-6)
        f = np.clip(f * rng.uniform(0.4, 1.2), 0, 1) ** rng.uniform(0.6, 1.7)
        if rng.random() < 1 / 3:
            f[:] = (f @ np.float32([0.299, 0.587, 0.114]))[..., None]
        out[i] = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def warp_pose(batch: np.ndarray, rng: np.random.Generator, *, p: float = 0.5) -> np.ndarray:
    """Copy of a uint8 ``(n, S, S, 3)`` batch where each image, with probability ``p``, is seen from
    another angle: a perspective warp that foreshortens one side, as a head turned left or right
    (up to about 35 % narrower and 20 % shorter on the far side) and, half the time, tilted up or
    down (up to 15 %). The face is not a plane, so this only approximates a turned head, but
    frontal photos show no turned heads at all, and VidTIMIT's head-rotation frames are where the
    compressed students fall behind the teacher."""
    import cv2

    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"warp_pose: p={p!r} must be in [0, 1]")
    b = np.asarray(batch)
    if b.dtype != np.uint8 or b.ndim != 4 or b.shape[-1] != 3 or b.shape[1] != b.shape[2]:
        raise ConfigError(f"warp_pose expects a uint8 (n, S, S, 3) batch, got {b.dtype} {b.shape}")
    out = b.copy()
    s = float(b.shape[1])
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    for i in range(len(b)):
        if rng.random() >= p:
            continue
        yaw = rng.uniform(-1, 1)  # > 0: the right side is the far one
        narrow, short = 0.35 * abs(yaw) * s, 0.10 * abs(yaw) * s
        x_far = s - narrow / 2 if yaw > 0 else narrow / 2  # the far edge moves in, the near one out
        x_near = -narrow / 2 if yaw > 0 else s + narrow / 2
        far = [[x_far, short], [x_far, s - short]]
        near = [[x_near, 0], [x_near, s]]
        dst = np.float32([near[0], far[0], far[1], near[1]] if yaw > 0 else [far[0], near[0], near[1], far[1]])
        if rng.random() < 0.5:  # tilt: the top (or bottom) edge narrows
            t = 0.15 * rng.uniform(-1, 1) * s / 2
            row = (0, 1) if t > 0 else (3, 2)
            dst[row[0], 0] += abs(t)
            dst[row[1], 0] -= abs(t)
        m = cv2.getPerspectiveTransform(src, dst)
        out[i] = cv2.warpPerspective(b[i], m, (b.shape[2], b.shape[1]), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT)  # black, as the chips' own frame
    return out
