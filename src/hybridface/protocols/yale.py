"""``yale-augmented``: the paper's Extended Yale B protocol with 18 variants per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, DatasetError
from hybridface.protocols.base import Sample, Split, sample_seed
from hybridface.protocols.dataset import scan_dataset

__all__ = ["yale_augmented", "resolve_dataset"]


def resolve_dataset(data_dir: Path, default_name: str) -> Path:
    """``data_dir`` itself, or ``data_dir/default_name`` when ``data_dir`` is the datasets parent."""
    if (data_dir / default_name).is_dir():
        return data_dir / default_name
    return data_dir


def _seeded_order(n: int, seed: int, identity: str) -> np.ndarray:
    import zlib

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(identity.encode())])
    return rng.permutation(n)


def yale_augmented(
    data_dir: Path,
    *,
    seed: int = 0,
    subjects: int = 15,
    gallery_fraction: float = 2 / 3,
    variants: int = 18,
    check: str = "header",
) -> Split:
    """First ``subjects`` identities (sorted); per subject ``round(n * gallery_fraction)``
    seeded-random images to the gallery, the rest probes; each image × ``variants``."""
    from hybridface.faces.augment import NUM_VARIANTS

    if not 0 < gallery_fraction < 1:
        raise ConfigError(f"gallery_fraction={gallery_fraction!r} must be between 0 and 1")
    if not 1 <= variants <= NUM_VARIANTS:
        raise ConfigError(f"variants={variants!r} must be 1..{NUM_VARIANTS}")
    root = resolve_dataset(Path(data_dir), "extended_yale_b")
    scan = scan_dataset(root, min_images=2, check=check)
    names = sorted(scan.identities)[: int(subjects)]
    if len(names) < int(subjects):
        raise DatasetError(f"{root}: yale-augmented needs {subjects} subjects, found {len(names)}")
    gallery: list[Sample] = []
    probes: list[Sample] = []
    for name in names:
        files = scan.identities[name]
        if len(files) < 2:
            raise DatasetError(f"{root / name}: needs at least 2 readable images, has {len(files)}")
        order = _seeded_order(len(files), seed, name)
        k = min(len(files) - 1, max(1, int(round(len(files) * gallery_fraction))))
        for side, idx in ((gallery, sorted(order[:k])), (probes, sorted(order[k:]))):
            for i in idx:
                f = files[int(i)]
                s = sample_seed(seed, name, f)
                side.extend(Sample(path=f, identity=name, variant=v, seed=s) for v in range(int(variants)))
    return Split(name="yale-augmented", gallery=tuple(gallery), probes=tuple(probes), detect="never", seed=int(seed))
