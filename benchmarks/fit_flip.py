"""Probe Rank-1 of a fitted gallery (``two-tier``'s G2) with and without test-time flip, over all
probes (face-less frames count as misses) and over those with a detected face; optionally refit
G2 first with other fit settings.

    python benchmarks/fit_flip.py --data ../shared/datasets --db WORK/vidtimit.db --fit WORK/vidtimit-fit.db \\
        [--protocol vidtimit] [--protocol-option KEY=VALUE ...] [--crop-cache DIR] \\
        [--refit OUT.db --epochs N --batch-size B]

The probe crops are made as ``hybridface two-tier`` makes them (the protocol's detect policy at
the enrolment encoder's crop size, resized to the kept-face size); the gallery side is G's kept
faces encoded by G2's model (what G2 holds). Test-time flip: a face's template is the sum of the
templates of it and its mirror image. Search: exhaustive (best template per identity).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np


def rank1(gallery: np.ndarray, g_ids: np.ndarray, probes: np.ndarray, p_ids: np.ndarray) -> int:
    sims = probes @ gallery.T
    best = np.full((len(probes), max(g_ids.max(), p_ids.max()) + 1), -np.inf, np.float32)
    for j in np.unique(g_ids):
        best[:, j] = sims[:, g_ids == j].max(axis=1)
    return int((best.argmax(axis=1) == p_ids).sum())


def main() -> None:
    import cv2

    from hybridface.api import open_gallery
    from hybridface.evaluation.flip import FlipEncoder
    from hybridface.faces.augment import augment
    from hybridface.faces.crop import load_crops
    from hybridface.gallery.faces import FACE_SIZE
    from hybridface.models.encoders import OnnxEncoder
    from hybridface.prepare import crop_size
    from hybridface.protocols import get_protocol

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--protocol", default="vidtimit")
    ap.add_argument("--protocol-option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--db", type=Path, required=True, help="the enrolment gallery G (faces kept)")
    ap.add_argument("--fit", type=Path, required=True, help="the fitted gallery G2")
    ap.add_argument("--crop-cache", type=Path, default=None)
    ap.add_argument("--refit", type=Path, default=None, help="fit G again into this gallery first (forced, scratch)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from hybridface.cli.evaluate import protocol_options

    opts = protocol_options(args.protocol_option)
    split = get_protocol(args.protocol, args.data, seed=0, **opts)
    fitted_db = args.fit
    if args.refit is not None:
        from hybridface.training.fit import fit_gallery

        t0 = time.perf_counter()
        rep = fit_gallery(args.db, args.refit, epochs=args.epochs, batch_size=args.batch_size, force=True,
                          warm_start=False, threads=args.threads, progress=False)
        print(f"refit: {rep.epochs} epochs, batch {args.batch_size}, {time.perf_counter() - t0:.0f} s; "
              f"self-check {rep.check.verdict}")
        fitted_db = args.refit
    with open_gallery(args.db, readonly=True) as g:
        faces = g.store.kept_faces()
        size = crop_size(g.encoder)
    with open_gallery(fitted_db, readonly=True) as g2:
        model_dir = Path(g2.encoder.path_)
    names = sorted(set(faces.identities) | {s.identity.replace("/", ":") for s in split.probes})
    index = {n: i for i, n in enumerate(names)}
    g_ids = np.array([index[n] for n in faces.identities])
    outcomes = load_crops([str(s.path) for s in split.probes], detect=split.detect, size=size,
                          cache_dir=args.crop_cache)
    ok = [i for i, o in enumerate(outcomes) if o.crop is not None]
    crops = []
    for i in ok:
        s = split.probes[i]
        img = outcomes[i].crop.image
        img = augment(img, s.variant, seed=s.seed) if s.variant else img
        crops.append(cv2.resize(img, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA))
    crops = np.stack(crops)
    p_ids = np.array([index[split.probes[i].identity.replace("/", ":")] for i in ok])
    n = len(split.probes)
    print(f"{args.protocol} {opts}: probes {n}, with a detected face {len(ok)}; gallery faces {len(g_ids)}")
    print("| encoder | hits | Rank-1 (all probes) | Rank-1 (detected) |\n| --- | ---: | ---: | ---: |")
    base = OnnxEncoder(model_dir)
    for name, enc in (("fitted", base), ("fitted + test-time flip", FlipEncoder(base))):
        hits = rank1(enc.encode(faces.images), g_ids, enc.encode(crops), p_ids)
        print(f"| {name} | {hits} | {100 * hits / n:.2f} % | {100 * hits / len(ok):.2f} % |")


if __name__ == "__main__":
    main()
