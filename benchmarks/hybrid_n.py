"""How large must the hybrid shortlist N be to keep every exhaustive answer? (per codewords)

    python benchmarks/hybrid_n.py --protocol vidtimit --data ../shared/datasets --cache /tmp/ev/cache

Uses the protocol's preset (trained model and templates from the evaluation cache, trained if
missing). For each number of LBG codewords per identity it ranks the identities by their nearest
codeword (the index of paper Fig. 3) and prints the largest rank of exhaustive search's answer
(over all probes, and over the probes exhaustive gets right): hybrid with that N returns
exhaustive's Rank-1 exactly. Also recall@5 of exhaustive's answer.
"""

from __future__ import annotations

import argparse
import sys
import logging
from pathlib import Path

import numpy as np


def preset_templates(cfg):
    """Train (or load from ``cfg.cache_dir``) the protocol preset's compressed model and encode the
    split's faces: ``(split, crops, dropped, gallery, probes, G, P)`` (samples with a face only).
    Shared with ``eval_failures.py``."""
    from hybridface.evaluation.cache import TemplateCache, content_hash
    from hybridface.evaluation.harness import _crops, encode_samples
    from hybridface.evaluation.splits import make_eval_split
    from hybridface.evaluation.training import train_compressed

    split = make_eval_split(cfg)
    paths = sorted({str(s.path) for s in (*split.gallery, *split.probes, *split.impostors)})
    hashes = {p: content_hash(p) for p in paths}
    crops, dropped = _crops(paths, split.detect, 60, cfg.cache_dir, False)
    enc, _ = train_compressed(split, crops, cfg)
    gal = [s for s in split.gallery if str(s.path) in crops]
    pro = [s for s in split.probes if str(s.path) in crops]
    cache = TemplateCache(cfg.cache_dir, enc.model_id, enc.dim)
    params = {"detect": split.detect, "size": 60}
    G, _ = encode_samples(enc, gal, crops, cache, hashes, params)
    P, _ = encode_samples(enc, pro, crops, cache, hashes, params)
    return split, crops, dropped, gal, pro, G, P


def main() -> int:
    from hybridface.evaluation.harness import EvalConfig
    from hybridface.evaluation.presets import preset_for_protocol
    from hybridface.gallery.matrix import TemplateMatrix
    from hybridface.index.lbg import build_codebooks

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="vidtimit")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--codewords", default="1,2,4,8")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    pre = preset_for_protocol(args.protocol)
    cfg = EvalConfig(protocol=args.protocol, data_dir=args.data, cache_dir=args.cache, models=("compressed",),
                     train=pre.train, progress=False)
    _, _, _, gal, pro, G, P = preset_templates(cfg)
    m = TemplateMatrix.from_arrays(G, [s.identity for s in gal])
    truth = np.array([m.names.index(s.identity) for s in pro])
    sims = P @ m.vectors.T
    per_id = np.stack([sims[:, m.offsets[i]:m.offsets[i + 1]].max(1) for i in range(m.num_identities)], 1)
    exh = per_id.argmax(1)
    ok = exh == truth
    print(f"{args.protocol} (preset {pre.name}): {len(P)} probes, {m.num_identities} identities, "
          f"exhaustive Rank-1 {100 * ok.mean():.2f} %")
    print("| codewords | N keeping every exhaustive answer | N keeping every correct one | recall@5 of exhaustive's answer |")
    print("|---:|---:|---:|---:|")
    for c in (int(v) for v in args.codewords.split(",")):
        mc = build_codebooks(m, codewords=c)
        cs = P @ mc.codewords.T
        idsim = np.stack([cs[:, mc.codeword_labels == i].max(1) for i in range(m.num_identities)], 1)
        rank = (idsim > idsim[np.arange(len(P)), exh][:, None]).sum(1) + 1
        print(f"| {c} | {int(rank.max())} | {int(rank[ok].max()) if ok.any() else 0} | {100 * np.mean(rank <= 5):.2f} % |")
    return 0


def run_script(main) -> None:
    """Exit with ``main()``'s status; a `HybridFaceError` (a missing dataset, a bad option, too few
    frames) is one ``error:`` line and exit 2 (also used by ``eval_failures.py``)."""
    from hybridface.errors import HybridFaceError

    try:
        raise SystemExit(main())
    except HybridFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    run_script(main)
