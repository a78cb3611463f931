"""Scan an ImageFolder-style dataset (``<root>/<identity>/<image>``) and report what is wrong.

Nothing is hidden: files that cannot be read as images are listed in ``unreadable`` with the
reason, identities with fewer than ``min_images`` readable images in ``too_few``, and files
with other extensions in ``ignored``. Only the image header is read (``check="header"``),
which catches empty, non-image and oversized files cheaply; ``check="decode"`` decodes every
image (catches truncation, slower); ``check="none"`` trusts the extension.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hybridface.errors import ConfigError, DatasetError
from hybridface.faces.io import IMAGE_EXTENSIONS, natural_key  # re-exported

__all__ = ["IMAGE_EXTENSIONS", "DatasetScan", "scan_dataset", "natural_key"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class DatasetScan:
    """What :func:`scan_dataset` found. ``identities`` maps name → readable image paths in
    natural (numeric-aware) order; identities listed in ``too_few`` are still in ``identities``."""

    root: Path
    identities: dict[str, tuple[Path, ...]]
    unreadable: tuple[tuple[Path, str], ...] = ()
    too_few: tuple[str, ...] = ()
    ignored: tuple[Path, ...] = ()
    min_images: int = 1
    loose_files: tuple[Path, ...] = field(default=())

    @property
    def num_images(self) -> int:
        return sum(len(v) for v in self.identities.values())

    def report(self) -> str:
        """Multi-line human-readable report (counts, then every problem)."""
        lines = [f"{self.root}: {len(self.identities)} identities, {self.num_images} images"]
        for p, why in self.unreadable:
            lines.append(f"  unreadable: {p}: {why}")
        for name in self.too_few:
            lines.append(f"  too few images (< {self.min_images}): {name} has {len(self.identities[name])}")
        if self.ignored:
            lines.append(f"  ignored {len(self.ignored)} non-image files (e.g. {self.ignored[0].name})")
        if self.loose_files:
            lines.append(f"  ignored {len(self.loose_files)} files directly under the root (not in an identity folder)")
        return "\n".join(lines)


def _check_file(path: Path, check: str) -> str | None:
    """Reason the file is unreadable, or ``None`` when fine."""
    if check == "none":
        return None if path.stat().st_size > 0 else "empty file (0 bytes)"
    if check == "decode":
        from hybridface.errors import ImageDecodeError
        from hybridface.faces.io import load_image

        try:
            load_image(path)
        except ImageDecodeError as exc:
            return str(exc).removeprefix(f"{path}: ")
        return None
    import warnings

    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
        if w * h == 0:
            return "image has zero width or height"
        return None
    except Exception as exc:  # noqa: BLE001 - every failure is a reason to report
        return f"{type(exc).__name__}: {exc}"


def scan_dataset(root: str | Path, *, min_images: int = 1, check: str = "header") -> DatasetScan:
    """Scan ``root``; raise :class:`DatasetError` if it is missing or holds no identity folder
    with images. Problems are logged (warning) and returned in the :class:`DatasetScan`."""
    if check not in ("header", "decode", "none"):
        raise ConfigError(f"check={check!r}: use 'header', 'decode' or 'none'")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; expected <root>/<identity>/<image files>")
    identities: dict[str, tuple[Path, ...]] = {}
    unreadable: list[tuple[Path, str]] = []
    ignored: list[Path] = []
    loose: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            loose.append(entry)
            continue
        good: list[Path] = []
        for f in sorted(entry.rglob("*"), key=natural_key):
            if f.name.startswith(".") or f.is_dir():
                continue
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append(f)
                continue
            why = _check_file(f, check)
            if why is None:
                good.append(f)
            else:
                unreadable.append((f, why))
        if good or any(p.parent == entry or entry in p.parents for p, _ in unreadable):
            identities[entry.name] = tuple(good)
    if not any(identities.values()):
        raise DatasetError(
            f"{root}: no readable images in <identity>/ sub-folders "
            f"(extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    too_few = tuple(k for k, v in identities.items() if len(v) < min_images)
    scan = DatasetScan(
        root=root,
        identities=identities,
        unreadable=tuple(unreadable),
        too_few=too_few,
        ignored=tuple(ignored),
        min_images=int(min_images),
        loose_files=tuple(loose),
    )
    for p, why in scan.unreadable:
        log.warning("unreadable image %s: %s", p, why)
    for name in too_few:
        log.warning("identity %s has only %d images (< %d)", name, len(identities[name]), min_images)
    return scan
