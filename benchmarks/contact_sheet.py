"""Contact sheets: 60 random 60x60 crops per dataset, as the network sees them.

Usage::

    python benchmarks/contact_sheet.py [--datasets vidtimit14 extended_yale_b att_orl utkface]
                                       [--n 60] [--seed 0] [--out docs/results]

Writes ``<out>/contact_<dataset>.png`` (10 crops per row). Crop policy per dataset: VidTIMIT
frames are detected (``largest``, ``cascade`` back-end, eye-aligned when landmarks exist); the
pre-cropped sets use ``never``. A red tile marks a file with no face / unreadable file.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

#: dataset folder (under the shared datasets dir) -> (relative path, detect policy)
DATASETS = {
    "vidtimit14": ("vidtimit14", "largest"),
    "extended_yale_b": ("extended_yale_b", "never"),
    "att_orl": ("att_orl", "never"),
    "utkface": ("unlabeled_faces/utkface", "never"),
}


def sheet(crops: list[np.ndarray | None], *, cols: int = 10, size: int = 60, gap: int = 2) -> np.ndarray:
    rows = -(-len(crops) // cols)
    out = np.full((rows * (size + gap) + gap, cols * (size + gap) + gap, 3), 255, np.uint8)
    for k, c in enumerate(crops):
        r, q = divmod(k, cols)
        tile = c if c is not None else np.tile(np.array([200, 30, 30], np.uint8), (size, size, 1))
        y, x = gap + r * (size + gap), gap + q * (size + gap)
        out[y : y + size, x : x + size] = tile
    return out


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from hybridface.config import shared_datasets_dir
    from hybridface.faces.crop import load_crops
    from hybridface.protocols.dataset import IMAGE_EXTENSIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--data", default=None, help="shared datasets folder (default: auto)")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default="cascade")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args(argv)
    base = Path(args.data) if args.data else shared_datasets_dir()
    if base is None:
        print("shared datasets not found", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| dataset | crops | no face / unreadable | policy | file |")
    print("| --- | ---: | ---: | --- | --- |")
    for name in args.datasets:
        rel, policy = DATASETS[name]
        files = sorted(p for p in (base / rel).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        pick = random.Random(args.seed).sample(files, min(args.n, len(files)))
        outcomes = load_crops(pick, detect=policy, detector=args.detector)
        crops = [o.crop.image if o.crop is not None else None for o in outcomes]
        dest = out / f"contact_{name}.png"
        arr = sheet(crops)
        if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
            img = Image.fromarray(arr[:, :, 0])  # grey dataset: one channel
        else:
            img = Image.fromarray(arr).quantize(colors=256)  # keeps the PNG small; fine for checking by eye
        img.save(dest, optimize=True)
        bad = sum(c is None for c in crops)
        how = policy if policy == "never" else f"{policy} ({args.detector})"
        print(f"| {name} | {len(crops)} | {bad} | {how} | {dest} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
