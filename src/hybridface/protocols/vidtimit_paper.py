"""``vidtimit-paper``: the paper's VidTIMIT split — per person a seeded random 1,700 : 672 split.

Meddad et al. (2020, Table II) put 1,700 of each person's 2,372 images in training (the
gallery) and the rest in test: 71.7 % : 28.3 %, frames drawn at random, so a probe frame
usually has gallery frames a few milliseconds before and after it. ``vidtimit`` (temporal:
first 60 % gallery, last 40 % probes) is the harder, more honest protocol; this one answers the
paper's own 99.9 % cell. Both exist so that each number is compared with its own protocol.
"""

from __future__ import annotations

import math
from pathlib import Path

from hybridface.errors import ConfigError, DatasetError
from hybridface.protocols.base import Sample, Split, sample_seed
from hybridface.protocols.dataset import scan_dataset
from hybridface.protocols.yale import _seeded_order, resolve_dataset

__all__ = ["vidtimit_paper", "PAPER_GALLERY_FRACTION"]

#: 1,700 of 2,372 images per person (Table II of the paper)
PAPER_GALLERY_FRACTION = 1700 / 2372


def vidtimit_paper(
    data_dir: Path,
    *,
    seed: int = 0,
    gallery_fraction: float = PAPER_GALLERY_FRACTION,
    min_frames: int = 10,
    check: str = "header",
) -> Split:
    """Per identity a seeded random permutation of its frames; the first
    ``round(n * gallery_fraction)`` (at least 1, at most n - 1) to the gallery, the rest probes.
    Identities with fewer than ``min_frames`` frames go to ``distractors`` (enrolled, never
    probed), as in ``vidtimit``. Raises :class:`DatasetError` (one line) when no identity has
    ``min_frames`` frames."""
    if not 0 < gallery_fraction < 1:
        raise ConfigError(f"gallery_fraction={gallery_fraction!r} must be between 0 and 1")
    if int(min_frames) < 2:
        raise ConfigError(f"min_frames={min_frames!r} must be >= 2 (one gallery and one probe frame)")
    root = resolve_dataset(Path(data_dir), "vidtimit14")
    scan = scan_dataset(root, min_images=int(min_frames), check=check)
    gallery: list[Sample] = []
    probes: list[Sample] = []
    distractors: list[Sample] = []
    for name in sorted(scan.identities):
        frames = scan.identities[name]
        if not frames:
            continue
        samples = [Sample(path=f, identity=name, variant=0, seed=sample_seed(seed, name, f)) for f in frames]
        if len(frames) < int(min_frames):
            distractors.extend(samples)
            continue
        order = _seeded_order(len(frames), seed, name)
        k = min(len(frames) - 1, max(1, math.floor(len(frames) * gallery_fraction + 0.5)))
        gallery.extend(samples[i] for i in sorted(order[:k]))
        probes.extend(samples[i] for i in sorted(order[k:]))
    if not probes:
        most = max((len(v) for v in scan.identities.values()), default=0)
        raise DatasetError(
            f"vidtimit-paper: no identity in {root} has at least {int(min_frames)} frames (the most is {most}); "
            "point --data at a VidTIMIT folder of <person>/<frames> or lower min_frames")
    return Split(
        name="vidtimit-paper",
        gallery=tuple(gallery),
        probes=tuple(probes),
        distractors=tuple(distractors),
        detect="largest",
        seed=int(seed),
    )
