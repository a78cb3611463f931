"""Which probes does a protocol's preset get wrong, and why? A contact sheet of every Rank-1 error.

    python benchmarks/eval_failures.py --protocol vidtimit-paper --data ../shared/datasets \
        --cache /tmp/wt17run/cache --out /tmp/failures/vidtimit-paper.png

Uses the protocol's preset (trained model and templates from the evaluation cache; trained if
missing; ``--[no-]batchnorm``/``--epochs``/``--loss``/``--margin``/``--channels``/``--denoise`` override it as in ``hybridface
evaluate``). Exhaustive search (nearest gallery template, cosine) on every probe with a face. For each
error, one row of the sheet: the probe's 60x60 crop, its nearest gallery crop (wrong identity), the
nearest gallery crop of its true identity, and the probe's whole frame shrunk, with the detector's
box. Prints one line per error (probe, truth, answer, similarities, detector box) for classifying
the errors by eye: non-face crops, wrong-person crops or network errors.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np


def _frame_with_box(path: str, box, *, height: int) -> np.ndarray:
    import cv2

    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    if box is not None:
        x, y, w, h = box
        cv2.rectangle(img, (x, y), (x + w, y + h), (255, 0, 0), max(2, img.shape[0] // 120))
    scale = height / img.shape[0]
    return cv2.resize(img, (int(round(img.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)


def main() -> int:
    import cv2

    from hybrid_n import preset_templates  # a sibling benchmark: python benchmarks/eval_failures.py
    from hybridface.evaluation.harness import EVAL_DETECTOR, EvalConfig
    from hybridface.evaluation.presets import preset_for_protocol
    from hybridface.evaluation.splits import materialise
    from hybridface.faces.crop import load_crops
    from hybridface.models.preprocess import DENOISE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="vidtimit-paper")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="contact sheet PNG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--loss", default=None)
    ap.add_argument("--channels", default=None)
    ap.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--denoise", default=None, choices=DENOISE)
    ap.add_argument("--margin", type=float, default=None)
    ap.add_argument("--max-rows", type=int, default=60, help="errors shown on the sheet (the first ones)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    pre = preset_for_protocol(args.protocol)
    given = {k: getattr(args, k) for k in ("epochs", "loss", "channels", "batchnorm", "denoise", "margin") if getattr(args, k) is not None}
    train = replace(pre.train, seed=args.seed, **given)
    cfg = EvalConfig(protocol=args.protocol, data_dir=args.data, cache_dir=args.cache, models=("compressed",),
                     train=train, seed=args.seed, progress=False)
    split, crops, dropped, gal, pro, G, P = preset_templates(cfg)
    g_ids = np.array([s.identity for s in gal])
    sims = P @ G.T
    nn = sims.argmax(1)
    wrong = np.flatnonzero(g_ids[nn] != np.array([s.identity for s in pro]))
    print(f"{args.protocol} (preset {pre.name}, {train}): {len(pro)} probes with a face "
          f"({dropped} files without), {len(wrong)} errors, Rank-1 {100 * (1 - len(wrong) / len(pro)):.2f} %")
    if any(s.variant for s in pro):  # augmented protocols: errors per transformation
        from collections import Counter

        per = Counter(pro[i].variant or "original" for i in wrong)
        tot = Counter(s.variant or "original" for s in pro)
        print("errors per variant: " + ", ".join(f"{v} {per[v]}/{tot[v]}" for v in sorted(tot, key=lambda v: -per[v])))
    shown = wrong[: args.max_rows]
    boxes = {o.path: o.crop.box for o in load_crops([str(pro[i].path) for i in shown], detect=split.detect,
                                                    detector=EVAL_DETECTOR, size=60,
                                                    cache_dir=cfg.cache_dir / "crops") if o.crop is not None}
    rows = []
    big = lambda im: cv2.resize(im, (120, 120), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    for i in shown:
        s = pro[i]
        own = np.flatnonzero(g_ids == s.identity)
        j_own = own[sims[i, own].argmax()]
        j = nn[i]
        box = boxes.get(str(s.path))
        print(f"{s.path.parent.name}/{s.path.name}{f' [{s.variant}]' if s.variant else ''}: answer {g_ids[j]} ({gal[j].path.name}, sim {sims[i, j]:.3f}); "
              f"nearest own {gal[j_own].path.name} sim {sims[i, j_own]:.3f}; box {box}")
        frame = _frame_with_box(str(s.path), box, height=120)
        p_img, g_img, o_img = materialise([s, gal[j], gal[j_own]], crops)  # as the network sees them
        tiles = [big(p_img), big(g_img), big(o_img), frame]
        row = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1)
        rows.append(row)
    if rows:
        width = max(r.shape[1] for r in rows)
        sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                for r in rows], 0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"sheet (probe | nearest gallery, wrong id | nearest of its own id | frame + box): {args.out}")
    return 0


if __name__ == "__main__":
    from hybrid_n import run_script  # a sibling benchmark: python benchmarks/eval_failures.py

    run_script(main)
