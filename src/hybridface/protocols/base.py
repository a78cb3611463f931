"""The records every protocol returns: :class:`Sample` and :class:`Split`."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "Split", "sample_seed"]


def sample_seed(split_seed: int, identity: str, path: Path | str) -> int:
    """Deterministic 31-bit augmentation seed of one image under a protocol seed."""
    return zlib.crc32(f"{int(split_seed)}/{identity}/{Path(path).name}".encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Sample:
    """One evaluation image: file, identity label, augmentation variant (0 = original).

    To materialise it: crop the file (``Split.detect`` policy), then
    ``augment(crop.image, sample.variant, seed=sample.seed)``. ``seed`` is set by the protocol
    from (protocol seed, identity, file name), so the same split always yields the same pixels.
    """

    path: Path
    identity: str
    variant: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Split:
    """Gallery (enrol), probes (search) and distractors (enrol only, never probed).

    Gallery and probe sides never share a file. ``detect`` is the face-crop policy for every
    sample of this split (``never`` for pre-cropped datasets)."""

    name: str
    gallery: tuple[Sample, ...]
    probes: tuple[Sample, ...]
    distractors: tuple[Sample, ...] = ()
    detect: str = "never"
    seed: int = 0

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(sorted({s.identity for s in (*self.gallery, *self.probes, *self.distractors)}))

    def summary(self) -> str:
        """One line: identities, images and variants per side."""

        def side(samples: tuple[Sample, ...]) -> str:
            files = len({s.path for s in samples})
            ids = len({s.identity for s in samples})
            return f"{len(samples)} samples ({files} files, {ids} ids)"

        variants = len({s.variant for s in (*self.gallery, *self.probes, *self.distractors)}) or 1
        return (
            f"{self.name} (seed {self.seed}, detect={self.detect}): {len(self.identities)} identities; "
            f"gallery {side(self.gallery)}; probes {side(self.probes)}; "
            f"distractors {side(self.distractors)}; {variants} variant(s) per image"
        )

    def counts(self) -> dict[str, int]:
        """Samples per identity on the gallery side (handy for checks)."""
        return dict(Counter(s.identity for s in self.gallery))
