"""``folder``: any ``<identity>/<image>`` dataset, per identity a seeded gallery/probe split."""

from __future__ import annotations

from pathlib import Path

from hybridface.errors import ConfigError
from hybridface.protocols.base import Sample, Split, sample_seed
from hybridface.protocols.dataset import scan_dataset
from hybridface.protocols.yale import _seeded_order

__all__ = ["folder"]


def folder(
    data_dir: Path,
    *,
    seed: int = 0,
    gallery_per_identity: int | None = None,
    detect: str = "largest",
    check: str = "header",
    order: str = "seeded",
) -> Split:
    """Per identity, seeded shuffle (``order="first"``: file-name order instead); the first
    ``gallery_per_identity`` images (default: half, at least 1, and always leaving one probe) go
    to the gallery, the rest to probes. An identity with a single image is a distractor
    (gallery side only)."""
    from hybridface.faces.crop import DETECT_POLICIES

    if order not in ("seeded", "first"):
        raise ConfigError(f"order={order!r}: use seeded (a seeded shuffle per identity) or first (file-name order)")
    if detect not in DETECT_POLICIES:
        raise ConfigError(f"detect={detect!r}: use one of {', '.join(DETECT_POLICIES)}")
    if gallery_per_identity is not None and int(gallery_per_identity) < 1:
        raise ConfigError(f"gallery_per_identity={gallery_per_identity!r} must be at least 1")
    root = Path(data_dir)
    scan = scan_dataset(root, min_images=2, check=check)
    gallery: list[Sample] = []
    probes: list[Sample] = []
    distractors: list[Sample] = []
    for name in sorted(scan.identities):
        files = scan.identities[name]
        if not files:
            continue
        if len(files) == 1:
            distractors.append(Sample(path=files[0], identity=name, seed=sample_seed(seed, name, files[0])))
            continue
        perm = _seeded_order(len(files), seed, name) if order == "seeded" else list(range(len(files)))
        k = len(files) // 2 if gallery_per_identity is None else int(gallery_per_identity)
        k = min(max(1, k), len(files) - 1)
        for side, idx in ((gallery, sorted(perm[:k])), (probes, sorted(perm[k:]))):
            side.extend(
                Sample(path=files[int(i)], identity=name, seed=sample_seed(seed, name, files[int(i)])) for i in idx
            )
    return Split(
        name="folder",
        gallery=tuple(gallery),
        probes=tuple(probes),
        distractors=tuple(distractors),
        detect=detect,
        seed=int(seed),
    )
