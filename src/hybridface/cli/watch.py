"""``hybridface watch SOURCE --db G``: live video identification as JSONL events on stdout.

Parsing and printing only; the work is :func:`hybridface.watch.watch` (via ``Gallery.watch``).
Progress and the live frame rate go to stderr; Ctrl-C stops after the current frame and still
prints a ``track_end`` for every open track and a final ``stream_end``.
"""

from __future__ import annotations

import json
import signal
import sys

from hybridface.cli.gallery import _search_opts


def cmd_watch(args) -> int:
    from tqdm import tqdm

    from hybridface.api import open_gallery

    search = dict(strategy=args.strategy, top_n=args.top_n, workers=args.workers, cells=args.cells,
                  probe_cells=args.probe_cells, storage=args.storage)
    with open_gallery(args.db, model=args.model, readonly=True) as g:
        bar = tqdm(desc="watch", unit="frame", file=sys.stderr, disable=args.no_progress or None,
                   dynamic_ncols=True)

        def on_frame(index: int, fps: float) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{fps:.1f} fps", refresh=False)

        w = g.watch(args.source, every=args.every, detector=args.detector, max_fps=args.max_fps,
                    threshold=args.threshold, min_votes=args.min_votes, max_frames=args.max_frames,
                    annotate=args.annotate, on_frame=on_frame, **search)
        if w.source.frame_count:
            bar.total = w.source.frame_count
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame) -> None:  # first Ctrl-C: finish cleanly; a second one aborts
            w.stop()
            signal.signal(signal.SIGINT, previous)

        signal.signal(signal.SIGINT, on_sigint)
        end = None
        try:
            for event in w:
                print(json.dumps(event.to_dict()), flush=True)
                if event.event == "stream_end":
                    end = event
        finally:
            signal.signal(signal.SIGINT, previous)
            bar.close()
    if end is not None and end.reason == "dropped":
        print(f"error: {end.message}", file=sys.stderr)
        return 2
    if end is not None and end.reason == "interrupted":
        print(f"interrupted: {end.message}; every open track was closed", file=sys.stderr)
        return 130
    return 0


def register(sub) -> None:
    p = sub.add_parser("watch", help="identify the faces of a video, camera or stream (JSONL events)")
    p.add_argument("source", help="video file, camera index (0), rtsp:// or http:// URL, or a folder of frames")
    p.add_argument("--db", required=True, help="gallery file (SQLite)")
    p.add_argument("--model", default=None, help="the gallery's model (directory, .onnx or zoo name)")
    p.add_argument("--detector", default=None,
                   help="face detector (default: dlib, the fast HOG one; opencv where dlib is not installed)")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="detect on every K-th frame, track in between (default: 1)")
    p.add_argument("--max-fps", type=float, default=None, metavar="F",
                   help="process at most F frames/s (files are paced, live sources drop frames)")
    p.add_argument("--threshold", type=float, default=None, help="unknown above this distance (default: calibrated)")
    p.add_argument("--min-votes", type=int, default=3, help="frames that must agree before a track is named")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--annotate", default=None, metavar="OUT.mp4", help="also write the video with boxes and names")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _search_opts(p)
    p.set_defaults(func=cmd_watch)
