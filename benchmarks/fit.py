"""Time ``hybridface fit`` from scratch and its warm start after new enrolments.

    python benchmarks/fit.py --db G.db [--add 1] [--threads 2] [--out-dir DIR]

1. copies G without its last ``--add`` identities (their templates and kept faces removed) → G_old;
2. fits G_old → G2 from scratch (timed);
3. fits the full G → G2 again: a warm start from G_old's fit (timed);
4. prints both times, the self-checks, and the fitted model's encode speed (ONNX Runtime, batch 256).
Nothing here is a test; numbers go to docs/results/fit/.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np


def _copy(src: Path, dst: Path) -> None:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def encode_speed(model_dir: Path, *, threads: int, batch: int = 256, seconds: float = 3.0) -> float:
    from hybridface.models.encoders import OnnxEncoder

    enc = OnnxEncoder(model_dir, threads=threads)
    x = np.random.default_rng(0).integers(0, 256, size=(batch, 60, 60, 3), dtype=np.uint8)
    from hybridface.models.preprocess import preprocess

    xp = preprocess(x, enc.spec)
    enc.encode_preprocessed(xp)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        enc.encode_preprocessed(xp)
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    from hybridface.api import open_gallery
    from hybridface.training.fit import fit_gallery

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, type=Path)
    ap.add_argument("--add", type=int, default=1, help="identities enrolled after the first fit")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.out_dir or Path(tempfile.mkdtemp(prefix="fitbench-"))
    work.mkdir(parents=True, exist_ok=True)
    old, g2 = work / "g_old.db", work / "g2.db"
    for p in (old, g2):
        p.unlink(missing_ok=True)
    _copy(args.db, old)
    with open_gallery(old) as g:
        names = [n for n, _ in g.identities()]
        for n in names[-args.add:]:
            g.remove(n)
        n_old = g.store.num_faces()
    opts = {"force": True, "threads": args.threads, "progress": True}
    if args.epochs:
        opts["epochs"] = args.epochs
    t0 = time.perf_counter()
    r1 = fit_gallery(old, g2, **opts)
    scratch = time.perf_counter() - t0
    t0 = time.perf_counter()
    r2 = fit_gallery(args.db, g2, **{k: v for k, v in opts.items() if k != "epochs"})
    warm = time.perf_counter() - t0
    speed = encode_speed(r2.model_dir, threads=args.threads or 2)
    out = {
        "gallery": str(args.db), "identities": r2.identities, "faces": r2.faces,
        "scratch": {"faces": n_old, "identities": r1.identities, "epochs": r1.epochs, "seconds": round(scratch, 1),
                    "check": r1.check.verdict},
        "warm": {"added_identities": args.add, "faces": r2.faces, "epochs": r2.epochs, "seconds": round(warm, 1),
                 "check": r2.check.verdict, "from": r2.warm_start},
        "encode_faces_per_s_batch256": round(speed), "onnx_bytes": r2.onnx_bytes,
    }
    print(json.dumps(out, indent=2))
    if args.out_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
