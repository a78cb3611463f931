"""Test videos for ``watch``: VidTIMIT frame sequences written with OpenCV's VideoWriter into tmp dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frames_of(person_dir: Path, *, start: float = 0.0, end: float = 1.0, step: int = 1) -> list[Path]:
    """A person's frame files in natural order, the slice ``[start, end)`` as fractions, every ``step``-th."""
    from hybridface.protocols.dataset import natural_key

    files = sorted((f for f in person_dir.iterdir() if f.suffix.lower() == ".jpg"), key=natural_key)
    return files[int(len(files) * start):int(len(files) * end)][::step]


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def tiled(left: list[Path], right: list[Path]) -> list[np.ndarray]:
    """Two sequences side by side (the shorter one's last frame held), one RGB frame each."""
    n = max(len(left), len(right))
    return [np.hstack([read_rgb(left[min(i, len(left) - 1)]), read_rgb(right[min(i, len(right) - 1)])])
            for i in range(n)]


def write_video(frames: list[np.ndarray], path: Path, *, fps: float = 25.0, codec: str = "mp4v") -> Path:
    """RGB frames → a video file (``mp4v`` in .mp4, or ``MJPG`` in .avi)."""
    import cv2

    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    assert out.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    return path
