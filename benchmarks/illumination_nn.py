"""What illumination normalisation alone buys: 1-NN Rank-1 on raw preprocessed pixels (no network).

Gallery and probes are the original images (variant 0) of a protocol (``yale-augmented``
by default, or ``vidtimit`` with ``--data`` pointing at ``vidtimit14``); each
image goes through :func:`hybridface.models.preprocess.preprocess` with one illumination method,
and probes are matched to the nearest gallery image on the 60x60 grey pixels (centred cosine,
and plain L2). Prints a Markdown table.

    python benchmarks/illumination_nn.py [--protocol yale-augmented --data /work/shared/datasets/extended_yale_b]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hybridface.models.data import load_faces
from hybridface.models.preprocess import ILLUMINATION, PreprocessSpec, preprocess
from hybridface.protocols import get_protocol


def _pixels(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    return preprocess(images, spec)[:, 0].reshape(len(images), -1).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/datasets/extended_yale_b")
    ap.add_argument("--protocol", default="yale-augmented")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    split = get_protocol(args.protocol, args.data, seed=args.seed)
    sides = []
    for samples in (split.gallery, split.probes):
        originals = [s for s in samples if s.variant == 0]
        imgs, kept, _ = load_faces([s.path for s in originals], detect=split.detect)
        sides.append((imgs, np.array([originals[i].identity for i in kept])))
    (gi, gl), (pi, pl) = sides
    print(f"{args.protocol} originals: {len(gi)} gallery / {len(pi)} probe images, "
          f"{len(set(gl))} identities, 1-NN on 60x60 preprocessed grey pixels\n")
    print("| illumination | 1-NN cosine (centred) | 1-NN L2 | preprocess ms / image |")
    print("|---|---:|---:|---:|")
    for ill in ILLUMINATION:
        spec = PreprocessSpec(illumination=ill)
        t0 = time.perf_counter()
        g, p = _pixels(gi, spec), _pixels(pi, spec)
        ms = 1000 * (time.perf_counter() - t0) / (len(gi) + len(pi))
        d2 = (p ** 2).sum(1)[:, None] - 2 * p @ g.T + (g ** 2).sum(1)[None]
        gc, pc = g - g.mean(1, keepdims=True), p - p.mean(1, keepdims=True)
        gc /= np.maximum(np.linalg.norm(gc, axis=1, keepdims=True), 1e-12)
        pc /= np.maximum(np.linalg.norm(pc, axis=1, keepdims=True), 1e-12)
        cos = np.mean(gl[(pc @ gc.T).argmax(1)] == pl)
        l2 = np.mean(gl[d2.argmin(1)] == pl)
        print(f"| {ill} | {100 * cos:.2f} % | {100 * l2:.2f} % | {ms:.3f} |")


if __name__ == "__main__":
    main()
