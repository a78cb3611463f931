"""Time ``hybridface fit`` on a ~2,000-face gallery: from scratch, warm start after +1 % identities,
and the fitted model's encode speed; write a markdown table.

    python benchmarks/fit_speed.py --data ../shared/datasets --work /tmp/fitspeed \\
        --md docs/results/fit/fit_speed.md [--faces 2000] [--add-fraction 0.01] [--threads 2]
    python benchmarks/fit_speed.py --from G1.db G2.db ... --work /tmp/fitspeed --md ...

1. builds (once; reused when ``WORK/g.db`` exists) a gallery of about ``--faces`` faces enrolled
   with the default encoder (dlib's ResNet on the ONNX port), faces kept: Extended Yale B (26 per
   person) and AT&T/ORL (10 per person) as ready crops, VidTIMIT frames (face detected) for the
   rest: 92 identities. ``--from``: instead merge existing galleries of that encoder (their kept
   faces and templates; identities prefixed with the file's stem), the largest subsampled evenly
   so the total is ``--faces``: no encoding needed;
2. copies it without its last ``ceil(add_fraction * identities)`` identities (G_old) and fits G_old
   from scratch (timed, ``fit``'s defaults);
3. fits the full gallery again: a warm start from G_old's fit (timed);
4. measures the fitted model's encode speed (ONNX Runtime, batch 256, ``--threads`` threads);
5. writes one markdown table with the load average before and after.
Nothing here is a test; numbers go to docs/results/fit/.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit import _copy, encode_speed  # noqa: E402  (benchmarks/fit.py)

PARTS = (("extended_yale_b", 26, "never"), ("att_orl", 10, "never"), ("vidtimit14", None, "largest"))


def build_gallery(data: Path, work: Path, faces: int) -> Path:
    """``WORK/g.db``: ~``faces`` faces of the three datasets, enrolled with the default encoder."""
    from hybridface.api import open_gallery

    db = work / "g.db"
    if db.exists():
        return db
    links = {"never": work / "links-never", "largest": work / "links-largest"}
    budget = faces
    for name, per, detect in PARTS:
        people = sorted(p for p in (data / name).iterdir() if p.is_dir())
        if per is None:  # the rest, spread over VidTIMIT's identities
            per = math.ceil(budget / len(people))
        for person in people:
            files = sorted(f for f in person.iterdir() if f.is_file())[:per]
            files = files[:max(0, budget)]
            if not files:
                continue
            out = links[detect] / f"{name[:4]}_{person.name}"
            out.mkdir(parents=True, exist_ok=True)
            for f in files:
                (out / f.name).unlink(missing_ok=True)
                (out / f.name).symlink_to(f)
            budget -= len(files)
    tmp = work / "g.building.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    with open_gallery(tmp, create=True) as g:
        for detect, folder in links.items():
            if folder.is_dir():
                g.enroll_folder(folder, detect=detect, progress=True)
    os.replace(tmp, db)
    return db


def merge_galleries(sources: list[Path], work: Path, faces: int) -> Path:
    """``WORK/g.db``: the kept faces + templates of ``sources`` (one encoder), about ``faces`` in all."""
    import numpy as np

    from hybridface.api import open_gallery
    from hybridface.training.fit import _load_gallery

    db = work / "g.db"
    if db.exists():
        return db
    loaded = [(src, *_load_gallery(src)) for src in sources]
    total = sum(len(x[2]) for x in loaded)
    big = max(range(len(loaded)), key=lambda i: len(loaded[i][2]))
    keep_big = len(loaded[big][2]) - max(0, total - faces)
    tmp = work / "g.building.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    with open_gallery(tmp, create=True) as g:
        for i, (src, kept, teacher, ids, meta, model_id) in enumerate(loaded):
            rows = np.arange(len(ids))
            if i == big:
                rows = np.unique(np.linspace(0, len(ids) - 1, keep_big).round().astype(int))
            prefix = src.parent.name if src.stem in ("unseen", "g") else src.stem
            for name in dict.fromkeys(ids[rows]):
                r = rows[ids[rows] == name]
                g.enroll_vectors(f"{prefix}:{name}", teacher[r], model_id=model_id,
                                 sources=[meta[j][0] for j in r], hashes=[meta[j][1] for j in r],
                                 faces=[kept.images[j] for j in r])
    os.replace(tmp, db)
    return db


def main() -> None:
    from hybridface.api import open_gallery
    from hybridface.training.fit import fit_gallery

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="datasets folder (extended_yale_b, att_orl, vidtimit14)")
    ap.add_argument("--from", dest="sources", type=Path, nargs="+", default=None,
                    help="merge these galleries (kept faces, one encoder) instead of enrolling --data")
    ap.add_argument("--work", type=Path, required=True, help="work folder (the built gallery is reused)")
    ap.add_argument("--md", type=Path, default=None, help="markdown table to write")
    ap.add_argument("--faces", type=int, default=2000)
    ap.add_argument("--add-fraction", type=float, default=0.01, help="share of identities enrolled after the first fit")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.sources:
        db = merge_galleries(args.sources, args.work, args.faces)
    elif args.data:
        db = build_gallery(args.data, args.work, args.faces)
    else:
        ap.error("give --data DATASETS or --from GALLERY ...")
    build_s = time.perf_counter() - t0
    old, g2 = args.work / "g_old.db", args.work / "g2.db"
    for p in (old, g2):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{p}{suffix}").unlink(missing_ok=True)
    _copy(db, old)
    with open_gallery(old) as g:
        names = [n for n, _ in g.identities()]
        add = max(1, math.ceil(args.add_fraction * len(names)))
        for n in names[-add:]:
            g.remove(n)
        n_old = g.store.num_faces()
    load0 = os.getloadavg()
    opts = {"force": True, "threads": args.threads, "progress": True}
    t0 = time.perf_counter()
    r1 = fit_gallery(old, g2, **opts)
    scratch = time.perf_counter() - t0
    t0 = time.perf_counter()
    r2 = fit_gallery(db, g2, **opts)
    warm = time.perf_counter() - t0
    speed = encode_speed(r2.model_dir, threads=args.threads)
    load1 = os.getloadavg()
    row = {"identities": r2.identities, "faces": r2.faces, "old_identities": r1.identities, "old_faces": n_old,
           "added": add, "scratch_s": round(scratch, 1), "scratch_epochs": r1.epochs, "scratch_check": r1.check.verdict,
           "warm_s": round(warm, 1), "warm_epochs": r2.epochs, "warm_check": r2.check.verdict,
           "encode_faces_per_s": round(speed), "threads": args.threads, "build_s": round(build_s, 1),
           "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in load1]}
    print(json.dumps(row, indent=2))
    if args.md:
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        lines = [
            f"# fit timings ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
            f"Machine: {cpu}, {os.cpu_count()} cores; torch/ORT threads {args.threads}; load average (1/5/15 min) "
            f"{'/'.join(map(str, row['load_before']))} before, {'/'.join(map(str, row['load_after']))} after.", "",
            "    " + " ".join(["python benchmarks/fit_speed.py", *sys.argv[1:]]), "",
            "| measure | size | time / speed | target | self-check |",
            "| --- | --- | ---: | ---: | --- |",
            f"| fit from scratch ({r1.epochs} epochs) | {n_old:,} faces, {r1.identities} identities | "
            f"{scratch:.0f} s | ≤ 300 s | {r1.check.verdict} |",
            f"| warm start after +{add} identit{'y' if add == 1 else 'ies'} "
            f"(+{100 * add / r1.identities:.1f} %; {r2.epochs} epochs) | {r2.faces:,} faces, {r2.identities} identities | "
            f"{warm:.0f} s | ≤ 60 s | {r2.check.verdict} |",
            f"| encode, fitted model (ORT, batch 256, {args.threads} threads) | {r2.onnx_bytes:,} B model | "
            f"{speed:,.0f} faces/s | ≥ 15,000 faces/s | |",
            "",
        ]
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
