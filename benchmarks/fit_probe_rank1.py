"""Rank-1 of fitted galleries on the VidTIMIT probe side, probes cropped at 60 px as on a device.

    python benchmarks/fit_probe_rank1.py G2.db [G2b.db ...]
"""
import logging
import sys
import time
from pathlib import Path

from hybridface.api import open_gallery
from hybridface.protocols import get_protocol

logging.getLogger("hybridface.faces.crop").setLevel(logging.ERROR)
split = get_protocol("vidtimit", Path("../shared/datasets"), seed=0)
paths = [str(s.path) for s in split.probes]
for db in sys.argv[1:]:
    t0 = time.perf_counter()
    with open_gallery(db, readonly=True) as g:
        ans = g.identify(paths, detect="largest", strategy="hybrid", k=1)
    hits = sum(a.identity == s.identity for a, s in zip(ans, split.probes))
    print(db, len(paths), hits, f"{100 * hits / len(paths):.2f} %", f"{time.perf_counter() - t0:.0f} s")
