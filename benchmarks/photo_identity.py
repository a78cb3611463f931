"""Whole photo → identity latency on one core: decode, detect, align, encode, search.

Enrols the first ``--per`` frames of each identity of a dataset folder with one encoder, then
identifies ``--probes`` other frames one call at a time through `Gallery.identify` (a path in,
an `Identification` out: what an identify request does), and splits each call into its stages
(crop = decode + detect + landmarks + chip; encode; search). Everything runs on one thread
(ORT, OpenCV and BLAS), and the run says whether dlib or torch were imported (the core-only
runtime needs neither).

    python benchmarks/photo_identity.py --data ../shared/datasets/vidtimit14 --model resnet-small \\
        --model resnet-int8 --md docs/results/models/photo_identity.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402


def frames(data: Path, per: int, probes: int) -> tuple[dict[str, list[Path]], list[tuple[str, Path]]]:
    """Gallery frames (first ``per`` of each identity) and evenly spaced probe frames of the rest."""
    from hybridface.models.resnet_int8 import IMAGE_SUFFIXES

    gallery, rest = {}, []
    for d in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) <= per:
            continue
        gallery[d.name] = files[:per]
        rest += [(d.name, f) for f in files[per:]]
    pick = np.linspace(0, len(rest) - 1, min(probes, len(rest))).round().astype(int)
    return gallery, [rest[i] for i in sorted(set(pick.tolist()))]


def run(model: str, data: Path, *, per: int, probes: int, detector: str, work: Path) -> dict:
    import cv2

    from hybridface import open_gallery
    from hybridface.models.resnet_encoder import ResNetEncoder
    from hybridface.models.zoo import load_encoder
    from hybridface.prepare import crop_size, encode_crops, prepare_images

    cv2.setNumThreads(1)
    enc = ResNetEncoder(model, threads=1) if model.endswith(".onnx") else load_encoder(model, threads=1)
    gallery, probe_files = frames(data, per, probes)
    g = open_gallery(work / f"{Path(model).stem}.db", encoder=enc, create=True)
    for name, files in gallery.items():
        g.enroll(name, [str(f) for f in files], detect="largest", detector=detector)
    size = crop_size(enc)
    g.identify(str(probe_files[0][1]), detect="largest", detector=detector, strategy="exhaustive")  # warm up
    total, crop, encode, hits = [], [], [], 0
    for name, f in probe_files:
        t0 = time.perf_counter()
        r = g.identify(str(f), detect="largest", detector=detector, strategy="exhaustive")
        total.append(time.perf_counter() - t0)
        hits += r.identity == name
        t0 = time.perf_counter()
        p = prepare_images([str(f)], detect="largest", detector=detector, size=size)[0]
        crop.append(time.perf_counter() - t0)
        if p.crop is not None:
            t0 = time.perf_counter()
            encode_crops(enc, [p.crop])
            encode.append(time.perf_counter() - t0)
    g.close()
    ms = lambda a, q: 1e3 * float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
    return {"model": model, "probes": len(probe_files), "templates": sum(map(len, gallery.values())),
            "p50": ms(total, 50), "p95": ms(total, 95), "crop": ms(crop, 50), "encode": ms(encode, 50),
            "rank1": hits / len(probe_files)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset folder <identity>/<frames>")
    ap.add_argument("--model", action="append", required=True, help="zoo name or .onnx (repeatable)")
    ap.add_argument("--per", type=int, default=5, help="gallery frames per identity")
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--detector", default="cascade-fast")
    ap.add_argument("--md", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        ap.exit(2, f"error: {args.data} is not a folder of <identity>/<image> files\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(m, args.data, per=args.per, probes=args.probes, detector=args.detector, work=Path(tmp))
                for m in args.model]
    lines = [
        "# Whole photo → identity, one call per photo, one thread",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:] if argv is None else argv)}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"detector `{args.detector}`; dlib imported: {'dlib' in sys.modules}; torch imported: {'torch' in sys.modules}.",
        "",
        "`total` = `Gallery.identify(path)` (decode + detect + landmarks + chip + encode + exhaustive search); "
        "`crop` and `encode` are the same stages timed alone (medians).",
        "",
        "| model | templates | probes | total p50 ms | total p95 ms | crop p50 ms | encode p50 ms | Rank-1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['model']} | {r['templates']} | {r['probes']} | {r['p50']:.1f} | {r['p95']:.1f} | "
              f"{r['crop']:.1f} | {r['encode']:.1f} | {100 * r['rank1']:.1f} % |" for r in rows]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
