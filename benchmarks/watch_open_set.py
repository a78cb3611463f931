"""``watch`` in the open set: enrolled people and strangers, with a calibrated threshold.

Usage::

    nice -n 10 python benchmarks/watch_open_set.py [--data DIR] [--models general] [--far 0.01] [--out docs/results/watch]

Every 4th VidTIMIT person (sorted by name) is a stranger, left out of the gallery; the others are
enrolled as in ``benchmarks/watch.py`` (every 3rd frame of the first 60 %). The open-set threshold
is calibrated at ``--far`` with ``Gallery.calibrate`` on other frames of the enrolled people's first
60 % (every 3rd, offset by one: never enrolled). Each person's last 40 % is one 256x192 video.

* known people: track-level and frame-level Rank-1 as in ``benchmarks/watch.py``, now with the
  threshold (a frame or track left "unknown" is a miss);
* strangers: false-accept rate = the fraction of the stranger's frames that a track *named* as
  someone covers (track level: its final identity; frame level: ``identify`` with the threshold).
Results: ``--out``/open_set.md and ``<model>-openset.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from watch import _decode, _frames, _write, score_watch  # benchmarks/watch.py


def run(model: str, root: Path, people: list[str], far: float, tmp: Path) -> dict:
    import cv2
    import numpy as np

    from hybridface.api import open_gallery

    strangers = people[::4]
    known = [p for p in people if p not in strangers]
    db = tmp / f"{model}-open.db"
    with open_gallery(db, model=model, create=True) as g:
        for p in known:
            g.enroll(p, _frames(root / p, 0.0, 0.6, 3), detect="largest", detector="dlib")
        cal_paths = [f for p in known for f in _frames(root / p, 0.0, 0.6, 1)[1::3]]
        labels = [f.parent.name for f in cal_paths]
        cal = g.calibrate(cal_paths, labels, target_far=far, detect="largest", detector="dlib")
    out = {"model": model, "far": far, "threshold": cal.threshold, "cal_far": cal.far, "cal_frr": cal.frr,
           "known": {}, "strangers": {}}
    with open_gallery(db, model=model, readonly=True) as g:
        for p in people:
            path = _write([cv2.imread(str(f)) for f in _frames(root / p, 0.6, 1.0)], tmp / f"{p}.mp4")
            frames = _decode(path)
            t0 = time.process_time()
            events = [e.to_dict() for e in g.watch(path, detector="dlib", strategy="hybrid")]
            cpu = time.process_time() - t0
            answers = g.identify([np.ascontiguousarray(f) for f in frames], detect="largest", detector="dlib", k=1)
            if p in known:
                s = score_watch(events, [p], len(frames), frames[0].shape[1])
                s["frame_correct"] = sum(a.identity == p for a in answers)
            else:
                named = [False] * len(frames)
                for e in events:
                    if e["event"] == "track_end" and e["identity"] is not None:
                        start = next(x["frame"] for x in events if x["event"] == "track_start" and x["track"] == e["track"])
                        for f in range(start, min(e["frame"], len(frames) - 1) + 1):
                            named[f] = True
                s = {"frames": len(frames), "track_fa": sum(named),
                     "frame_fa": sum(a.identity is not None for a in answers)}
            s["cpu_s"] = cpu
            (out["known"] if p in known else out["strangers"])[p] = s
            print(model, p, s.get("track_correct", s.get("track_fa")), s.get("frame_correct", s.get("frame_fa")),
                  s["frames"], file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import cv2

    from hybridface.config import shared_datasets_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", default="general")
    ap.add_argument("--far", type=float, default=0.01)
    ap.add_argument("--out", default="docs/results/watch")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:1]))
    root = Path(args.data) if args.data else (shared_datasets_dir() or Path(".")) / "vidtimit14"
    people = sorted(p.name for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 50)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# watch in the open set (VidTIMIT)", "",
             f"`python benchmarks/watch_open_set.py {' '.join(argv if argv is not None else sys.argv[1:])}` — "
             f"strangers (not enrolled): {', '.join(people[::4])}; threshold calibrated at FAR {args.far} on "
             "never-enrolled gallery-side frames; `watch --detector dlib --strategy hybrid --every 1`.", "",
             "| model | threshold | known: track Rank-1 | known: online Rank-1 | known: frame-level Rank-1 "
             "| strangers: track-level false accepts | strangers: frame-level false accepts |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            cache = out / f"{model}-openset.json"
            res = json.loads(cache.read_text()) if cache.is_file() else run(model, root, people, args.far, Path(tmp))
            cache.write_text(json.dumps(res, indent=1))
            k, s = res["known"].values(), res["strangers"].values()
            kn = sum(v["frames"] for v in k)
            sn = sum(v["frames"] for v in s)
            lines.append(
                f"| {model} | {res['threshold']:.4f} | {100 * sum(v['track_correct'] for v in k) / kn:.2f} % | "
                f"{100 * sum(v['online_correct'] for v in k) / kn:.2f} % | "
                f"{100 * sum(v['frame_correct'] for v in k) / kn:.2f} % | "
                f"{100 * sum(v['track_fa'] for v in s) / sn:.2f} % | {100 * sum(v['frame_fa'] for v in s) / sn:.2f} % |")
    (out / "open_set.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
