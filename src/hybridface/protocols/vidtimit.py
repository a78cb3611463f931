"""``vidtimit``: temporal split of video frames (first 60 % gallery, last 40 % probes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from hybridface.errors import ConfigError, DatasetError
from hybridface.protocols.base import Sample, Split, sample_seed
from hybridface.protocols.dataset import scan_dataset
from hybridface.protocols.yale import resolve_dataset

__all__ = ["vidtimit", "split_frames"]


def vidtimit(
    data_dir: Path,
    *,
    seed: int = 0,
    gallery_fraction: float = 0.6,
    min_frames: int = 10,
    check: str = "header",
) -> Split:
    """Per identity, frames in recording order (numeric file names); the first
    ``ceil(n * gallery_fraction)`` to the gallery, the rest probes. Identities with fewer than
    ``min_frames`` frames go to ``distractors`` (enrolled, never probed). ``seed`` only sets
    the samples' augmentation seeds: the split itself is fixed by time order."""
    if not 0 < gallery_fraction < 1:
        raise ConfigError(f"gallery_fraction={gallery_fraction!r} must be between 0 and 1")

    def first_frames(n: int, name: str) -> list[int]:
        return list(range(min(n - 1, math.ceil(n * gallery_fraction - 1e-9))))

    return split_frames(data_dir, "vidtimit", first_frames, seed=seed, min_frames=min_frames, check=check)


def split_frames(data_dir: Path, name: str, gallery_rows: Callable[[int, str], list[int]], *, seed: int,
                 min_frames: int, check: str) -> Split:
    """Split each person's frames (natural, i.e. recording, order) into gallery rows
    ``gallery_rows(n, identity)`` and probes (the rest); identities with fewer than ``min_frames``
    frames go to ``distractors`` (enrolled, never probed). Shared by both VidTIMIT protocols."""
    root = resolve_dataset(Path(data_dir), "vidtimit14")
    scan = scan_dataset(root, min_images=int(min_frames), check=check)
    gallery: list[Sample] = []
    probes: list[Sample] = []
    distractors: list[Sample] = []
    for ident in sorted(scan.identities):
        frames = scan.identities[ident]  # natural order == recording order
        if not frames:
            continue
        samples = [Sample(path=f, identity=ident, variant=0, seed=sample_seed(seed, ident, f)) for f in frames]
        if len(frames) < int(min_frames):
            distractors.extend(samples)
            continue
        rows = set(gallery_rows(len(frames), ident))
        gallery.extend(s for i, s in enumerate(samples) if i in rows)
        probes.extend(s for i, s in enumerate(samples) if i not in rows)
    if not probes:
        most = max((len(v) for v in scan.identities.values()), default=0)
        raise DatasetError(
            f"{name}: no identity in {root} has at least {int(min_frames)} frames (the most is {most}); "
            "point --data at a VidTIMIT folder of <person>/<frames> or lower min_frames")
    return Split(name=name, gallery=tuple(gallery), probes=tuple(probes), distractors=tuple(distractors),
                 detect="largest", seed=int(seed))
