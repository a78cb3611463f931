"""Face folders the tests build in temporary directories (``<root>/<identity>/<image>``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def noisy_faces(root: Path, names=("ann", "bob", "cid"), per: int = 3) -> Path:
    """Per identity a random 60x60 texture seen ``per`` times with noise (plumbing, not recognition)."""
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=(60, 60, 3)).astype(np.float32)
        for j in range(per):
            img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{j}.png")
    return root


def shifted_people(root: Path, names, per: int, seed: int = 0) -> Path:
    """Per identity a smooth random pattern (its 'face') seen with noise and small shifts: learnable."""
    rng = np.random.default_rng(seed)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        base = np.kron(rng.integers(0, 256, size=(6, 6, 3)), np.ones((12, 12, 1))).astype(np.float32)
        for j in range(per):
            dy, dx = rng.integers(0, 8, size=2)
            img = base[dy:dy + 64, dx:dx + 64] + rng.normal(0, 8, (64, 64, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{j:02d}.png")
    return root


def vidtimit_slice(src: Path, root: Path, *, people: int = 3, frames: int = 12) -> Path:
    """``root/vidtimit14``: symlinks to the first ``frames`` frames of ``people`` VidTIMIT identities
    (skipping the first, which has only 3 frames)."""
    out = root / "vidtimit14"
    for name in sorted(p.name for p in src.iterdir() if p.is_dir())[1:1 + people]:
        (out / name).mkdir(parents=True)
        for f in sorted((src / name).iterdir())[:frames]:
            (out / name / f.name).symlink_to(f)
    return out
