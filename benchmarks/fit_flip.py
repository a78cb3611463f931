"""Probe Rank-1 of a fitted VidTIMIT gallery with and without test-time flip (template of a face and
its mirror image, summed), over all probes (face-less frames count as misses) and detected ones.

    python benchmarks/fit_flip.py --data ../shared/datasets --db WORK/vidtimit.db --fit WORK/vidtimit-fit.db \\
        [--crop-cache DIR]

The probe crops are made as ``hybridface two-tier vidtimit`` makes them (the protocol's detect
policy at the enrolment encoder's crop size, resized to the kept-face size); the gallery side is
G's kept faces encoded by G2's model (what G2 holds), with and without flip. Search: exhaustive.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np


def rank1(gallery: np.ndarray, g_ids: np.ndarray, probes: np.ndarray, p_ids: np.ndarray) -> int:
    sims = probes @ gallery.T
    best = np.full((len(probes), g_ids.max() + 1), -np.inf, np.float32)
    for j in np.unique(g_ids):
        best[:, j] = sims[:, g_ids == j].max(axis=1)
    return int((best.argmax(axis=1) == p_ids).sum())


def main() -> None:
    import cv2

    from hybridface.api import load_encoder, open_gallery
    from hybridface.evaluation.flip import FlipEncoder
    from hybridface.faces.crop import load_crops
    from hybridface.gallery.faces import FACE_SIZE
    from hybridface.models.encoders import OnnxEncoder
    from hybridface.prepare import crop_size
    from hybridface.protocols import get_protocol

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--db", type=Path, required=True, help="the enrolment gallery G (faces kept)")
    ap.add_argument("--fit", type=Path, required=True, help="the fitted gallery G2")
    ap.add_argument("--crop-cache", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    split = get_protocol("vidtimit", args.data, seed=0)
    with open_gallery(args.db, readonly=True) as g:
        faces = g.store.kept_faces()
        size = crop_size(g.encoder)
    with open_gallery(args.fit, readonly=True) as g2:
        model_dir = Path(g2.encoder.path_)
    names = sorted(set(faces.identities) | {s.identity for s in split.probes})
    index = {n: i for i, n in enumerate(names)}
    g_ids = np.array([index[n] for n in faces.identities])
    outcomes = load_crops([str(s.path) for s in split.probes], detect=split.detect, size=size,
                          cache_dir=args.crop_cache)
    ok = [i for i, o in enumerate(outcomes) if o.crop is not None]
    crops = np.stack([cv2.resize(outcomes[i].crop.image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
                      for i in ok])
    p_ids = np.array([index[split.probes[i].identity] for i in ok])
    n = len(split.probes)
    print(f"probes {n}, with a detected face {len(ok)}; gallery faces {len(g_ids)}")
    print("| encoder | hits | Rank-1 (all probes) | Rank-1 (detected) |\n| --- | ---: | ---: | ---: |")
    base = OnnxEncoder(model_dir)
    for name, enc in (("fitted", base), ("fitted + test-time flip", FlipEncoder(base))):
        hits = rank1(enc.encode(faces.images), g_ids, enc.encode(crops), p_ids)
        print(f"| {name} | {hits} | {100 * hits / n:.2f} % | {100 * hits / len(ok):.2f} % |")


if __name__ == "__main__":
    main()
