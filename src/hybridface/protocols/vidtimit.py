"""``vidtimit``: temporal split of video frames (first 60 % gallery, last 40 % probes)."""

from __future__ import annotations

import math
from pathlib import Path

from hybridface.errors import ConfigError
from hybridface.protocols.base import Sample, Split, sample_seed
from hybridface.protocols.dataset import scan_dataset
from hybridface.protocols.yale import resolve_dataset

__all__ = ["vidtimit"]


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
    root = resolve_dataset(Path(data_dir), "vidtimit14")
    scan = scan_dataset(root, min_images=int(min_frames), check=check)
    gallery: list[Sample] = []
    probes: list[Sample] = []
    distractors: list[Sample] = []
    for name in sorted(scan.identities):
        frames = scan.identities[name]  # natural order == recording order
        if not frames:
            continue
        samples = [Sample(path=f, identity=name, variant=0, seed=sample_seed(seed, name, f)) for f in frames]
        if len(frames) < int(min_frames):
            distractors.extend(samples)
            continue
        k = min(len(frames) - 1, math.ceil(len(frames) * gallery_fraction - 1e-9))
        gallery.extend(samples[:k])
        probes.extend(samples[k:])
    return Split(
        name="vidtimit",
        gallery=tuple(gallery),
        probes=tuple(probes),
        distractors=tuple(distractors),
        detect="largest",
        seed=int(seed),
    )
