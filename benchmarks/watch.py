"""``watch`` end to end on VidTIMIT videos: fps on one core, track-level accuracy, identity switches,
time to first identification, against frame-by-frame ``identify`` on the same decoded frames.

Usage::

    nice -n 10 python benchmarks/watch.py [--data DIR] [--models general,classifier,dlib] [--out docs/results/watch]

For each model: a gallery of every ``--gallery-step``-th frame of the first 60 % of each VidTIMIT
person's frames (dlib HOG detection, largest face); probe videos are the last 40 % of each person's
frames written with OpenCV's VideoWriter (mp4v, 25 fps) into a temp dir: one 256x192 video per
person (single) and one 512x192 video per pair of people side by side (tiled, person i and i+1).
``watch`` runs with ``--every 1`` (``--every K``: detection on every K-th frame, tracking between;
cached as ``<model>-everyK.json`` and listed in the report of a later default run), dlib HOG
detection, hybrid search, no threshold (closed set).

Metrics (per model, single and tiled):
* fps: frames / CPU second of this process pinned to one core (``sched_setaffinity``, 1 BLAS/ORT/
  OpenCV thread; detection, tracking, cropping, encoding, search and decoding included), and frames
  per wall second next to it (a shared, noisy machine).
* track-level Rank-1: the fraction of (person, frame) pairs whose face is in a track whose *final*
  identity is that person (a frame no track covers counts as a miss); online Rank-1: the identity
  the track carried *at that frame* (frames before its first identification count as misses).
* frame-level Rank-1: ``Gallery.identify`` on each person's half of the same decoded frames
  (detect largest, dlib HOG; no face = miss).
* switches: ``identified`` events after a track's first, per track and per 100 tracked frames.
* time to first identification: frames (and seconds at 25 fps) from the person's first frame to the
  first ``identified`` event naming anyone, median and max over persons.
Results are cached per model in ``--out``/<model>.json (resumable); the report is ``--out``/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

FPS = 25.0


def _frames(person_dir: Path, start: float, end: float, step: int = 1) -> list[Path]:
    from hybridface.protocols.dataset import natural_key

    files = sorted((f for f in person_dir.iterdir() if f.suffix.lower() == ".jpg"), key=natural_key)
    return files[int(len(files) * start):int(len(files) * end)][::step]


def _write(frames, path: Path) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    for f in frames:
        out.write(f)
    out.release()
    return path


def _decode(path: Path) -> list:
    import cv2

    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))


def make_videos(root: Path, people: list[str], tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    import cv2
    import numpy as np

    seqs = {p: [cv2.imread(str(f)) for f in _frames(root / p, 0.6, 1.0)] for p in people}
    vids: dict[str, tuple[Path, list[str]]] = {}
    for p in people:
        vids[f"single/{p}"] = (_write(seqs[p], tmp / f"{p}.mp4"), [p])
    for i, a in enumerate(people):
        b = people[(i + 1) % len(people)]
        n = max(len(seqs[a]), len(seqs[b]))
        frames = [np.hstack([seqs[a][min(j, len(seqs[a]) - 1)], seqs[b][min(j, len(seqs[b]) - 1)]]) for j in range(n)]
        vids[f"tiled/{a}+{b}"] = (_write(frames, tmp / f"{a}+{b}.mp4"), [a, b])
    return vids


def score_watch(events: list[dict], truth: list[str], n_frames: int, width: int) -> dict:
    """Track-level and online Rank-1, switches, time to first identification for one video."""
    side = width / len(truth)
    final: dict[int, dict] = {}
    timeline: dict[int, list[tuple[int, str | None]]] = {}
    for e in events:
        if e["event"] == "track_start":
            timeline[e["track"]] = [(e["frame"], None)]
        elif e["event"] == "identified":
            timeline[e["track"]].append((e["frame"], e["identity"]))
        elif e["event"] == "track_end":
            final[e["track"]] = e
    out = {"tracks": 0, "frames": 0, "track_correct": 0, "online_correct": 0, "switches": 0,
           "tracked_frames": 0, "first_id": []}
    for k, person in enumerate(truth):
        covered_final = [False] * n_frames
        covered_online = [False] * n_frames
        first = None
        for tid, end in final.items():
            cx = end["box"][0] + end["box"][2] / 2
            if int(cx // side) != k:
                continue
            tl = timeline[tid]
            out["tracks"] += 1
            out["tracked_frames"] += end["frames"]
            out["switches"] += max(0, sum(1 for _, n in tl[1:]) - 1)
            named = [f for f, n in tl[1:]]
            if named and (first is None or named[0] < first):
                first = named[0]
            start, stop = tl[0][0], end["frame"]
            for f in range(start, min(stop, n_frames - 1) + 1):
                if end["identity"] == person:
                    covered_final[f] = True
                cur = None
                for g, n in tl:
                    if g <= f:
                        cur = n
                if cur == person:
                    covered_online[f] = True
        out["frames"] += n_frames
        out["track_correct"] += sum(covered_final)
        out["online_correct"] += sum(covered_online)
        out["first_id"].append(first if first is not None else n_frames)
    return out


def run_model(model: str, root: Path, people: list[str], vids: dict, gallery_step: int, workdir: Path,
              every: int = 1) -> dict:
    import numpy as np

    from hybridface.api import open_gallery

    db = workdir / f"{model}.db"
    t0 = time.perf_counter()
    with open_gallery(db, model=model, create=True) as g:
        for p in people:
            g.enroll(p, _frames(root / p, 0.0, 0.6, gallery_step), detect="largest", detector="dlib")
        n_templates = sum(c for _, c in g.identities())
    enrol_s = time.perf_counter() - t0
    res: dict = {"model": model, "every": every, "templates": n_templates, "enrol_s": round(enrol_s, 1),
                 "videos": {}}
    with open_gallery(db, model=model, readonly=True) as g:
        g.identify(np.zeros((1, g.store.dim), np.float32))  # load the model and searcher before timing
        for name, (path, truth) in vids.items():
            decoded = _decode(path)
            c0, w0 = time.process_time(), time.perf_counter()
            events = [e.to_dict() for e in g.watch(path, detector="dlib", strategy="hybrid", every=every)]
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            width = decoded[0].shape[1]
            s = score_watch(events, truth, len(decoded), width)
            # frame-level identify on each person's half of the same decoded frames
            half = width // len(truth)
            hits = 0
            for k, person in enumerate(truth):
                crops = [np.ascontiguousarray(f[:, k * half:(k + 1) * half]) for f in decoded]
                answers = g.identify(crops, detect="largest", detector="dlib", strategy="hybrid", k=1)
                hits += sum(a.identity == person for a in answers)
            s.update(frame_correct=hits, cpu_s=cpu, wall_s=wall, n_video_frames=len(decoded))
            res["videos"][name] = s
            print(f"{model} {name}: track {s['track_correct']}/{s['frames']} online {s['online_correct']} "
                  f"frame {hits} switches {s['switches']} tracks {s['tracks']} {len(decoded) / cpu:.1f} fps/cpu",
                  file=sys.stderr, flush=True)
    return res


def summarise(res: dict, kind: str) -> dict:
    vs = [v for k, v in res["videos"].items() if k.startswith(kind + "/")]
    frames = sum(v["frames"] for v in vs)
    tracked = sum(v["tracked_frames"] for v in vs)
    first = [f for v in vs for f in v["first_id"]]
    return {
        "videos": len(vs),
        "fps_cpu": sum(v["n_video_frames"] for v in vs) / sum(v["cpu_s"] for v in vs),
        "fps_wall": sum(v["n_video_frames"] for v in vs) / sum(v["wall_s"] for v in vs),
        "track_rank1": 100 * sum(v["track_correct"] for v in vs) / frames,
        "online_rank1": 100 * sum(v["online_correct"] for v in vs) / frames,
        "frame_rank1": 100 * sum(v["frame_correct"] for v in vs) / frames,
        "tracks": sum(v["tracks"] for v in vs),
        "switches": sum(v["switches"] for v in vs),
        "switches_per_100": 100 * sum(v["switches"] for v in vs) / max(tracked, 1),
        "first_id_median": statistics.median(first),
        "first_id_max": max(first),
    }


def main(argv: list[str] | None = None) -> int:
    import cv2

    from hybridface.config import shared_datasets_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="vidtimit14 folder (default: shared datasets)")
    ap.add_argument("--models", default="general,classifier,dlib")
    ap.add_argument("--gallery-step", type=int, default=3, help="every N-th gallery-side frame is enrolled")
    ap.add_argument("--people", type=int, default=None, help="only the first N people (quick runs)")
    ap.add_argument("--cores", type=int, default=1, help="pin the process to this many cores (default 1)")
    ap.add_argument("--every", type=int, default=1, help="watch --every K: detect on every K-th frame, track between")
    ap.add_argument("--out", default="docs/results/watch")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    root = Path(args.data) if args.data else (shared_datasets_dir() or Path(".")) / "vidtimit14"
    people = sorted(p.name for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 50)
    people = people[: args.people] if args.people else people
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        vids = make_videos(root, people, Path(tmp))
        for model in args.models.split(","):
            label = model if args.every == 1 else f"{model}, every {args.every}"
            cache = out / (f"{model}.json" if args.every == 1 else f"{model}-every{args.every}.json")
            if cache.is_file():
                results[label] = json.loads(cache.read_text())
                continue
            results[label] = run_model(model, root, people, vids, args.gallery_step, Path(tmp), args.every)
            cache.write_text(json.dumps(results[label], indent=1))
    for extra in sorted(out.glob("*-every*.json")) if args.every == 1 else ():  # earlier --every runs, shown too
        res = json.loads(extra.read_text())
        results.setdefault(f"{res['model']}, every {res['every']}", res)
    lines = [
        "# watch on VidTIMIT videos", "",
        f"`{' '.join(['python', 'benchmarks/watch.py', *(argv if argv is not None else sys.argv[1:])])}` — "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared, noisy), pinned to "
        f"{args.cores} core(s); {len(people)} people; gallery = every frame in {args.gallery_step} of the first "
        "60 %; videos = the last 40 % (single: 256x192, tiled: two people side by side, 512x192); "
        "`watch --detector dlib --strategy hybrid`, `--every 1` unless the model column says otherwise; closed set.", "",
        "| model | video | fps (CPU s, 1 core) | fps (wall) | track Rank-1 | online Rank-1 | frame-level identify Rank-1 "
        "| tracks | switches (per 100 tracked frames) | first identification: median / max frames |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, res in results.items():
        for kind in ("single", "tiled"):
            s = summarise(res, kind)
            lines.append(f"| {model} | {kind} ({s['videos']}) | {s['fps_cpu']:.1f} | {s['fps_wall']:.1f} | "
                         f"{s['track_rank1']:.2f} % | {s['online_rank1']:.2f} % | {s['frame_rank1']:.2f} % | "
                         f"{s['tracks']} | {s['switches']} ({s['switches_per_100']:.2f}) | "
                         f"{s['first_id_median']:g} / {s['first_id_max']:g} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
