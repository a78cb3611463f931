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

from hybridface.errors import ConfigError
from hybridface.protocols.base import Split
from hybridface.protocols.vidtimit import split_frames
from hybridface.protocols.yale import _seeded_order

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

    def random_frames(n: int, name: str) -> list[int]:
        order = _seeded_order(n, seed, name)
        return list(order[:min(n - 1, max(1, math.floor(n * gallery_fraction + 0.5)))])

    return split_frames(data_dir, "vidtimit-paper", random_frames, seed=seed, min_frames=min_frames, check=check)
