"""Whole photo → identity latency on one core: decode, detect, align, encode, search.

Enrols the first ``--per`` frames of each identity of a dataset folder with one encoder, then
identifies ``--probes`` other frames one call at a time through `Gallery.identify` (a path in,
an `Identification` out: what an identify request does), and splits each call into its stages
(crop = decode + detect + landmarks + chip; encode; search). Everything runs on one thread
(ORT, OpenCV and BLAS), and the run says whether dlib or torch were imported (the core-only
runtime needs neither). By default dlib and torch are hidden from the process, as on a device
with only the core runtime (numpy, onnxruntime, opencv, numba): ``cascade-fast`` then runs its
OpenCV stages only. ``--with-dlib`` lets it use an installed dlib (HOG first, dlib's 5-point
eyes), as a server does. Encoders with an alignment step (``resnet*``) also get the crop's
encode split into landmarks / chip / ONNX Runtime.

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


def _timed(fn, *args) -> tuple[float, object]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def run(model: str, data: Path, *, per: int, probes: int, detector: str, work: Path) -> dict:
    import cv2

    from hybridface import open_gallery
    from hybridface.faces.crop import extract_faces
    from hybridface.faces.io import load_image
    from hybridface.models.base import to_uint8_batch
    from hybridface.models.chip import face_chips
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
    aligned = isinstance(enc, ResNetEncoder)
    keys = ("total", "cpu", "crop", "encode", "decode", "detect", "landmarks", "chip", "ort", "search")
    t: dict[str, list[float]] = {k: [] for k in keys}
    hits = 0
    for name, f in probe_files:
        c0 = time.process_time()
        dt, r = _timed(lambda: g.identify(str(f), detect="largest", detector=detector, strategy="exhaustive"))
        t["cpu"].append(time.process_time() - c0)
        t["total"].append(dt)
        hits += r.identity == name
        dt, p = _timed(lambda: prepare_images([str(f)], detect="largest", detector=detector, size=size)[0])
        t["crop"].append(dt)
        if p.crop is None:
            continue
        dt, v = _timed(encode_crops, enc, [p.crop])
        t["encode"].append(dt)
        dt, img = _timed(load_image, str(f))
        t["decode"].append(dt)
        t["detect"].append(_timed(lambda: extract_faces(img, detect="largest", detector=detector, size=size))[0])
        dt, _ = _timed(lambda: g.identify(v, strategy="exhaustive"))
        t["search"].append(dt)
        if aligned:  # the same steps as ResNetEncoder.encode, one at a time
            batch = to_uint8_batch(np.stack([p.crop]), enc.input_size)
            h, w = enc.input_size
            box = np.array([[0, 0, w - 1, h - 1]], np.float64)
            dt, marks = _timed(enc._predictor.predict, batch, box)
            t["landmarks"].append(dt)
            dt, chips = _timed(face_chips, batch, marks)
            t["chip"].append(dt)
            t["ort"].append(_timed(enc.embed_chips, chips)[0])
    g.close()
    ms = lambda a, q: 1e3 * float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
    return {"model": model, "probes": len(probe_files), "templates": sum(map(len, gallery.values())),
            "p50": ms(t["total"], 50), "p95": ms(t["total"], 95), "rank1": hits / len(probe_files),
            "load": os.getloadavg()[0], **{k: ms(t[k], 50) for k in keys[1:]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset folder <identity>/<frames>")
    ap.add_argument("--model", action="append", required=True, help="zoo name or .onnx (repeatable)")
    ap.add_argument("--per", type=int, default=5, help="gallery frames per identity")
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--detector", default="cascade-fast")
    ap.add_argument("--md", type=Path, default=None, help="also write the table here")
    ap.add_argument("--with-dlib", action="store_true",
                    help="let the detector use an installed dlib (default: hide dlib and torch, as on a device)")
    args = ap.parse_args(argv)
    if not args.with_dlib:
        for m in ("dlib", "_dlib_pybind11", "torch"):
            sys.modules[m] = None  # import fails as if not installed
    if not args.data.is_dir():
        ap.exit(2, f"error: {args.data} is not a folder of <identity>/<image> files\n")
    from hybridface.errors import HybridFaceError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows = [run(m, args.data, per=args.per, probes=args.probes, detector=args.detector, work=Path(tmp))
                    for m in args.model]
        except HybridFaceError as exc:  # unknown model, missing file, no probe frames: one line
            ap.exit(2, f"error: {exc}\n")
    lines = [
        "# Whole photo → identity, one call per photo, one thread",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:] if argv is None else argv)}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"detector `{args.detector}`; dlib imported: {sys.modules.get('dlib') is not None}; "
        f"torch imported: {sys.modules.get('torch') is not None}.",
        "",
        f"Runtime: {'as installed (dlib allowed)' if args.with_dlib else 'core-only (dlib and torch hidden)'}.",
        "",
        "`total` = `Gallery.identify(path)` (decode + detect + landmarks + chip + encode + exhaustive search); "
        "`cpu` = its CPU time (this process, one thread: what it costs one core on a busy machine); "
        "`load` = 1-min load average after the model's run; "
        "the other columns are its stages timed alone (medians): `crop` = decode + detect + crop "
        "(`prepare_images`), `encode` = `encode_crops` of that crop = `landmarks` + `chip` + `ort` "
        "(ONNX Runtime on the 150x150 chip), `decode` = JPEG decode, `detect` = detect + crop of the "
        "decoded image, `search` = `identify` of the template.",
        "",
        "| model | templates | probes | total p50 ms | total p95 ms | cpu p50 ms | crop | encode | decode | detect "
        "| landmarks | chip | ort | search | Rank-1 | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['model']} | {r['templates']} | {r['probes']} | {r['p50']:.1f} | {r['p95']:.1f} | "
              + " | ".join(f"{r[k]:.2f}" for k in ("cpu", "crop", "encode", "decode", "detect", "landmarks",
                                                   "chip", "ort", "search"))
              + f" | {100 * r['rank1']:.1f} % | {r['load']:.1f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
