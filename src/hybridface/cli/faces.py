"""``hybridface faces`` (write the 60x60 crops the network sees, plus a CSV) and
``hybridface protocol`` (print a protocol's split summary)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def _collect(target: Path) -> tuple[list[Path], Path]:
    """Image files under ``target`` (recursively, sorted) and the folder names are relative to."""
    from hybridface.errors import ConfigError
    from hybridface.protocols.dataset import IMAGE_EXTENSIONS, natural_key

    if target.is_file():
        return [target], target.parent
    if not target.is_dir():
        raise ConfigError(f"{target}: no such file or folder")
    files = [p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ConfigError(f"{target}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    return sorted(files, key=lambda p: (str(p.parent), natural_key(p))), target


def _faces(args: argparse.Namespace) -> int:
    import cv2

    from hybridface.faces.crop import load_crops

    target = Path(args.input)
    files, base = _collect(target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = load_crops(files, detect=args.detect, detector=args.detector, size=args.size, margin=args.margin,
                          cache_dir=args.cache, progress=args.progress)
    rows = []
    for path, o in zip(files, outcomes):
        rel = path.relative_to(base)
        crops = o.crops if args.detect == "all" else o.crops[:1]
        if not crops:
            rows.append({"file": str(path), "crop": "", "face": "", "x": "", "y": "", "w": "", "h": "",
                         "score": "", "status": o.status, "message": "" if o.error is None else str(o.error)})
            continue
        for i, c in enumerate(crops):
            name = rel.with_suffix("").as_posix().replace("/", "__") + (f"_{i}" if args.detect == "all" else "") + ".png"
            dest = out / name
            cv2.imwrite(str(dest), cv2.cvtColor(c.image, cv2.COLOR_RGB2BGR))
            x, y, w, h = c.box
            rows.append({"file": str(path), "crop": name, "face": i, "x": x, "y": y, "w": w, "h": h,
                         "score": round(c.score, 4), "status": "ok", "message": ""})
    fields = ["file", "crop", "face", "x", "y", "w", "h", "score", "status", "message"]
    with open(out / "crops.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{'FILE':<48} {'STATUS':<10} {'BOX (x,y,w,h)':<22} SCORE")
        for r in rows:
            box = f"{r['x']},{r['y']},{r['w']},{r['h']}" if r["status"] == "ok" else ""
            print(f"{Path(r['file']).name[:48]:<48} {r['status']:<10} {box:<22} {r['score']}")
    n_ok = sum(1 for o in outcomes if o.crop is not None)
    if not args.json:
        print(f"{n_ok}/{len(files)} files gave a face; crops and crops.csv in {out}")
    return 0 if n_ok else 1


def _protocol(args: argparse.Namespace) -> int:
    from hybridface.protocols import get_protocol

    options = {}
    if args.gallery_per_identity is not None:
        options["gallery_per_identity"] = args.gallery_per_identity
    if args.detect is not None:
        options["detect"] = args.detect
    split = get_protocol(args.name, args.data, seed=args.seed, **options)
    if args.json:
        print(json.dumps({
            "protocol": split.name, "seed": split.seed, "detect": split.detect,
            "identities": len(split.identities), "gallery": len(split.gallery), "probes": len(split.probes),
            "distractors": len(split.distractors),
            "variants": len({s.variant for s in (*split.gallery, *split.probes)}) or 1,
        }))
    else:
        print(split.summary())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from hybridface.faces.crop import DETECT_POLICIES
    from hybridface.faces.detect import DETECTORS
    from hybridface.protocols import PROTOCOLS

    p = subparsers.add_parser(
        "faces",
        help="detect and crop faces: write the 60x60 crops the network sees and a CSV (file, box, score, status)",
    )
    p.add_argument("input", metavar="IMAGE_OR_DIR", help="an image file or a folder (searched recursively)")
    p.add_argument("--out", required=True, metavar="CROPS_DIR", help="folder for the crop PNGs and crops.csv")
    p.add_argument("--detector", default="cascade", choices=DETECTORS, help="detection back-end (default: cascade)")
    p.add_argument("--detect", default="largest", choices=DETECT_POLICIES,
                   help="never: the image already is a face; largest/always: one face; all: every face")
    p.add_argument("--size", type=int, default=60, help="crop side in pixels (default 60)")
    p.add_argument("--margin", type=float, default=0.2, help="margin added on each side of the box (default 0.2)")
    p.add_argument("--cache", metavar="DIR", default=None, help="crop cache folder (reused across runs)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--json", action="store_true", help="one JSON object per crop/file instead of a table")
    p.set_defaults(func=_faces)

    q = subparsers.add_parser("protocol", help="print the gallery/probe split summary of an evaluation protocol")
    q.add_argument("name", choices=sorted(PROTOCOLS), help="protocol name")
    q.add_argument("--data", required=True, metavar="DIR",
                   help="dataset folder (or the datasets folder holding extended_yale_b / vidtimit14)")
    q.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    q.add_argument("--gallery-per-identity", type=int, default=None, help="folder protocol: gallery images per identity")
    q.add_argument("--detect", choices=DETECT_POLICIES, default=None, help="folder protocol: crop policy")
    q.add_argument("--json", action="store_true", help="one JSON object instead of the summary line")
    q.set_defaults(func=_protocol)
