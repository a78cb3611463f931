"""Image loading for training and encoding: ImageFolder scan → uint8 face-crop arrays.

Decoding and cropping are the faces package's job (:mod:`hybridface.faces`); this module only
adapts them to what the models need: one ``(n, S, S, 3)`` uint8 array, loaded once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybridface.errors import DatasetError, HybridFaceError

__all__ = ["scan_image_folder", "load_faces", "load_face"]

log = logging.getLogger(__name__)


def scan_image_folder(root: str | Path) -> list[tuple[Path, str]]:
    """``(path, identity)`` for every image of an ``<root>/<identity>/<image>`` folder, sorted.

    Raises :class:`DatasetError` when the folder is missing or empty, or when an identity folder
    holds no image at all (name it so the user can fix or remove it). Unreadable files are left in
    (they are reported and skipped when loaded).
    """
    from hybridface.protocols.dataset import scan_dataset

    root = Path(root)
    scan = scan_dataset(root, check="none")
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and not scan.identities.get(entry.name):
            bad = [str(p) for p, _ in scan.unreadable if entry in p.parents]
            if not bad:
                raise DatasetError(f"{entry}: identity folder holds no images; add images or remove the folder")
    samples = [(p, name) for name, paths in scan.identities.items() for p in paths]
    samples += [(p, p.relative_to(root).parts[0]) for p, _ in scan.unreadable]
    return sorted(samples, key=lambda s: (s[1], str(s[0])))


def load_faces(
    paths: Sequence[str | Path], *, detect: str = "never", size: int = 60, progress: bool = False
) -> tuple[np.ndarray, list[int], list[tuple[str, HybridFaceError]]]:
    """Load and crop ``paths`` → ``(images (m, size, size, 3) uint8, kept indices, [(path, error)])``.

    A file that cannot be read (or has no face under ``detect``) is reported and skipped, never fatal.
    """
    from hybridface.faces.crop import load_crops

    outcomes = load_crops([str(p) for p in paths], detect=detect, size=size, progress=progress)
    kept: list[int] = []
    images: list[np.ndarray] = []
    errors: list[tuple[str, HybridFaceError]] = []
    for i, o in enumerate(outcomes):
        if o.crop is not None:
            kept.append(i)
            images.append(o.crop.image)
        else:
            err = o.error or DatasetError(f"{o.path}: no face found")
            errors.append((o.path, err))
    arr = np.stack(images) if images else np.empty((0, size, size, 3), np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8), kept, errors


def load_face(path: str | Path, *, detect: str = "never", size: int = 60) -> np.ndarray:
    """One file → ``(size, size, 3)`` uint8 crop; raises the faces package's error naming the file."""
    from hybridface.faces.crop import extract_faces

    return extract_faces(path, detect=detect, size=size, source=str(path))[0].image
