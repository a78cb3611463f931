"""Detection rate and time per frame of each face-detection back-end on VidTIMIT (vidtimit14).

Usage::

    nice -n 10 python benchmarks/detect.py [--data DIR] [--step 1] [--cnn-step 10] [--backends ...]

Decoding is done once up front and not timed. Time per frame is CPU time of this process
(``time.process_time``, OpenCV limited to one thread, dlib is single-threaded), so it reads as
"ms per frame on one core" even on a busy machine; wall time is printed next to it.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import cv2

    from hybridface.config import shared_datasets_dir
    from hybridface.faces.detect import detect_faces
    from hybridface.faces.io import load_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="vidtimit14 folder (default: shared datasets)")
    ap.add_argument("--step", type=int, default=1, help="use every STEP-th frame (default 1 = all)")
    ap.add_argument("--cnn-step", type=int, default=10, help="dlib-cnn is slow: every N-th frame of those")
    ap.add_argument("--backends", nargs="+",
                    default=["dlib", "opencv-frontal", "opencv-profile", "opencv", "cascade", "dlib-cnn"])
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    root = Path(args.data) if args.data else (shared_datasets_dir() or Path(".")) / "vidtimit14"
    files = sorted(root.glob("*/*.jpg"))[:: args.step]
    if not files:
        print(f"no frames under {root}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    images = [load_image(f) for f in files]
    decode_ms = (time.perf_counter() - t0) / len(files) * 1000
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, opencv {cv2.__version__}")
    print(f"command: python benchmarks/{Path(__file__).name} {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"frames: {len(files)} of {root} (256x192), decode {decode_ms:.1f} ms/frame (not counted)\n")
    print("| back-end | frames | face found | rate | CPU ms/frame | wall ms/frame | stage that found it |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for backend in args.backends:
        sel = list(range(0, len(images), args.cnn_step if backend == "dlib-cnn" else 1))
        detect_faces(images[0], detector=backend)  # load models outside the timing
        stages: collections.Counter[str] = collections.Counter()
        found = 0
        c0, w0 = time.process_time(), time.perf_counter()
        for i in sel:
            dets = detect_faces(images[i], detector=backend)
            if dets:
                found += 1
                stages[dets[0].detector] += 1
        cpu = (time.process_time() - c0) / len(sel) * 1000
        wall = (time.perf_counter() - w0) / len(sel) * 1000
        stage_txt = ", ".join(f"{k} {v}" for k, v in stages.most_common())
        print(f"| {backend} | {len(sel)} | {found} | {found / len(sel) * 100:.1f} % | {cpu:.1f} | {wall:.1f} | {stage_txt} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
