"""Cost of the gallery's integrity check on open and of ``hybridface check`` (docs/results/reliability.md).

    python benchmarks/open_check.py --templates 200000 --out /tmp/open_check.db
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import hybridface.gallery.integrity as integrity
    from hybridface.gallery.store import GalleryStore

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--templates", type=int, default=200_000)
    p.add_argument("--per-identity", type=int, default=100)
    p.add_argument("--out", default="/tmp/open_check.db", help="gallery file (built once, then reused)")
    args = p.parse_args(argv)
    db = Path(args.out)
    if not db.exists():
        rng = np.random.default_rng(0)
        with GalleryStore(db, create=True, quantizer=lambda v, k: v[:1]) as s:
            for i in range(args.templates // args.per_identity):
                s.add_templates(f"id{i}", rng.standard_normal((args.per_identity, 60)).astype(np.float32),
                                [f"h{i}_{j}" for j in range(args.per_identity)], model_id="m")
    size = db.stat().st_size
    cap = integrity.QUICK_CHECK_MAX_BYTES
    for label, limit in (("open + load, no check", 0), ("open + load, check on open", cap)):
        integrity.QUICK_CHECK_MAX_BYTES = limit
        best = float("inf")
        for _ in range(3):
            integrity._checked.clear()
            t = time.perf_counter()
            with GalleryStore(db) as s:
                n = len(s.load_matrix().vectors)
            best = min(best, time.perf_counter() - t)
        print(f"{label}: {best * 1000:.0f} ms ({n:,} templates, {size / 1e6:.0f} MB; best of 3)")
    integrity.QUICK_CHECK_MAX_BYTES = cap
    t = time.perf_counter()
    ok = integrity.full_check(db).ok
    print(f"hybridface check (integrity_check + every vector's norm): {time.perf_counter() - t:.2f} s, ok={ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
