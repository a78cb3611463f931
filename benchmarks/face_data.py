"""Real face templates for ``benchmarks/search.py --data faces``.

The shipped default encoder (``hybridface.api.load_encoder(None)``) over the face images of a
datasets folder (``att_orl``, ``extended_yale_b``: one identity per folder; ``unlabeled_faces``:
one identity per image; images taken as face crops, ``detect="never"``). To reach N templates each
gallery template is a seeded random augmentation of a random source image (rotation ±10°, scale
0.9-1.1, shift ±3 px, mirror, brightness 0.8-1.2), so every template is a different image; exact
duplicate rows are dropped and redrawn. Probes are fresh augmentations (another seed) of random
source images, so they are never gallery rows. Templates are cached under ``cache_dir`` per
(N, probes, seed, model id), so a rerun loads them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DATASETS = ("att_orl", "extended_yale_b", "unlabeled_faces")


def source_faces(root: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images (m, size, size, 3) uint8, identity label per image)`` of the datasets under ``root``."""
    from hybridface.models.data import load_faces

    paths, names = [], []
    for ds in DATASETS:
        base = root / ds
        if not base.is_dir():
            continue
        for ident in sorted(p for p in base.iterdir() if p.is_dir()):
            files = sorted(f for f in ident.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".pgm", ".bmp"))
            for f in files:
                paths.append(f)
                names.append(f"{ds}/{f.name}" if ds == "unlabeled_faces" else f"{ds}/{ident.name}")
    if not paths:
        raise SystemExit(f"error: --data faces found no images under {root} ({', '.join(DATASETS)}); "
                         "pass --faces-root DIR")
    images, kept, errors = load_faces(paths, detect="never", size=size)
    if errors:
        log.warning("%d images could not be read and were skipped", len(errors))
    _, labels = np.unique(np.asarray(names)[kept], return_inverse=True)
    return images, labels.astype(np.int64)


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rng.uniform(-10, 10), rng.uniform(0.9, 1.1))
    m[:, 2] += rng.uniform(-3, 3, 2)
    out = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)


def _encode_augmented(encoder, images, picks, rng, size, batch=2048) -> np.ndarray:
    out = np.empty((len(picks), encoder.dim), np.float32)
    for a in range(0, len(picks), batch):
        crops = np.stack([_augment(images[i], rng) for i in picks[a : a + batch]])
        out[a : a + len(crops)] = encoder.encode(crops)
    return out


def face_templates(n: int, n_probes: int, *, root: Path, cache_dir: Path, seed: int = 0, model: str | None = None):
    """``(vectors (n, d) grouped by identity, labels, probes (n_probes, d))``, unit float32 rows;
    ``model``: a zoo name or model path (default: the default encoder)."""
    from hybridface import api
    from hybridface.prepare import crop_size

    encoder = api.load_encoder(model)
    key = f"faces_{n}_{n_probes}_{seed}_{encoder.model_id[:12]}.npz"
    path = Path(cache_dir) / key
    if path.exists():
        z = np.load(path)
        return z["x"], z["labels"], z["probes"]
    size = crop_size(encoder)
    images, src_label = source_faces(Path(root), size)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.integers(0, len(images), n))
    x = _encode_augmented(encoder, images, picks, rng, size)
    while True:  # drop exact duplicate rows, redraw them
        _, first = np.unique(x, axis=0, return_index=True)
        if len(first) == n:
            break
        dup = np.setdiff1d(np.arange(n), first)
        x[dup] = _encode_augmented(encoder, images, picks[dup], rng, size)
    labels = src_label[picks]
    order = np.argsort(labels, kind="stable")
    x, labels = np.ascontiguousarray(x[order]), labels[order]
    _, labels = np.unique(labels, return_inverse=True)  # identities with templates, 0..m-1
    probes = _encode_augmented(encoder, images, rng.integers(0, len(images), n_probes),
                               np.random.default_rng(seed + 1), size)
    # probes of source images with no gallery template would have no right answer: keep them anyway
    # (recall is measured against exhaustive search, not labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, labels=labels.astype(np.int64), probes=probes)
    log.info("face templates: %d from %d source images, cached at %s", n, len(images), path)
    return x, labels.astype(np.int64), probes
