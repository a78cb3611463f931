"""Identification of never-seen identities: the ``unseen`` protocol, several models side by side.

For each rotation (held-out dataset) every model encodes the same gallery (first k images per
test identity, seeded) and the same probes (evenly spaced subset with ``--limit-probes``);
1-NN cosine search over all templates gives Rank-1 / Rank-5 (closed set, every test identity
enrolled). DIR@FAR 1 %: a seeded 20 % of the test identities is removed from the gallery and
their probes become impostors. Also: parameters and ONNX bytes of each model, faces/s (batch of
256, preprocessing included). Embeddings are cached in ``--cache`` (dlib costs ~85 ms a face).

    python benchmarks/unseen.py --data ../shared/datasets --model distill=runs/distill \
        --model softmax-{holdout}=runs/softmax-{holdout} --dlib --limit-probes 300
    python benchmarks/unseen.py --data ../shared/datasets --dlib --zoo resnet --zoo resnet-int8

``{holdout}`` in a model path is replaced by the rotation (per-rotation baselines).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _crops(samples, detect: str, size: int, cache: Path) -> dict[str, np.ndarray]:
    from hybridface.faces.crop import load_crops

    paths = sorted({str(s.path) for s in samples})
    outs = load_crops(paths, detect=detect, size=size, cache_dir=cache / "crops")
    return {o.path: o.crop.image for o in outs if o.crop is not None}


def _encode(name: str, encoder, samples, crops, cache: Path, tag: str) -> np.ndarray:
    key = hashlib.sha256(("|".join(str(s.path) for s in samples) + encoder.model_id + tag).encode()).hexdigest()[:20]
    f = cache / "embeddings" / f"{name}-{key}.npy"
    if f.is_file():
        return np.load(f)
    x = encoder.encode(np.stack([crops[str(s.path)] for s in samples]))
    f.parent.mkdir(parents=True, exist_ok=True)
    np.save(f, x)
    return x


def _scores(G, g_ids, P, p_ids, seed: int) -> dict[str, float]:
    from hybridface.evaluation.metrics import dir_at_far

    names = sorted(set(g_ids))
    gi = np.array([names.index(i) for i in g_ids])
    pi = np.array([names.index(i) if i in names else -1 for i in p_ids])
    sim = P @ G.T
    best = np.full((len(P), len(names)), -np.inf, np.float32)
    for c in range(len(names)):
        best[:, c] = sim[:, gi == c].max(1)
    order = np.argsort(-best, axis=1)
    rank = np.argmax(order == pi[:, None], axis=1)
    out = {"rank1": float((rank == 0).mean()), "rank5": float((rank < 5).mean())}
    rng = np.random.default_rng(seed)
    held = set(rng.choice(names, size=max(1, round(0.2 * len(names))), replace=False).tolist())
    keep_g = np.array([i not in held for i in g_ids])
    imp = np.array([i in held for i in p_ids])
    sims_open = sim[:, keep_g]
    gk = gi[keep_g]
    top = sims_open.argmax(1)
    dist = 1.0 - sims_open.max(1)
    correct = gk[top] == pi
    out["dir_far1"] = dir_at_far(dist[~imp], correct[~imp], dist[imp], 0.01).dir
    return out


class _Pixels:
    """Baseline: the 60x60 grey crop itself (mean-removed, L2-normalised) as the template."""

    model_id = "pixels-60-grey"

    def encode(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32).mean(axis=3).reshape(len(images), -1)
        x -= x.mean(axis=1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _size(model) -> tuple[int | None, int | None]:
    path = getattr(model, "path_", None)
    if path is None:
        return None, None
    import onnx
    from onnx import numpy_helper

    params = sum(numpy_helper.to_array(t).size for t in onnx.load(str(path)).graph.initializer) - 1  # minus eps
    return int(params), int(Path(path).stat().st_size)


def _speed(encoder, crops: list[np.ndarray]) -> float:
    batch = np.stack((crops * (256 // len(crops) + 1))[:256])
    encoder.encode(batch[:8])
    t0 = time.perf_counter()
    encoder.encode(batch)
    return 256 / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="datasets root")
    ap.add_argument("--holdout", action="append", help="rotation(s) (default: all three)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=MODEL_DIR")
    ap.add_argument("--dlib", action="store_true", help="also the dlib ResNet (reference)")
    ap.add_argument("--onnx", action="append", default=[], metavar="NAME=FILE.onnx",
                    help="also a chip-input ONNX model (resnet students) on 150x150 crops (repeatable)")
    ap.add_argument("--zoo", action="append", default=[], metavar="NAME",
                    help="also a zoo model on 150x150 crops, e.g. resnet, resnet-int8 (repeatable)")
    ap.add_argument("--pixels", action="store_true", help="also raw 60x60 grey pixels (the floor to beat)")
    ap.add_argument("--limit-probes", type=int, default=300)
    ap.add_argument("--gallery-per-identity", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(".cache/hybridface/unseen"))
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here (benchmarks/frontier.py reads it)")
    args = ap.parse_args(argv)
    from hybridface.models.encoders import load_model
    from hybridface.protocols.unseen import ROTATIONS, unseen

    rotations = args.holdout or list(ROTATIONS)
    rows = []
    for h in rotations:
        split = unseen(args.data, seed=args.seed, holdout=h, gallery_per_identity=args.gallery_per_identity)
        probes = list(split.probes)
        if args.limit_probes and len(probes) > args.limit_probes:
            probes = [probes[i] for i in np.linspace(0, len(probes) - 1, args.limit_probes).round().astype(int)]
        gallery = list(split.gallery) + list(split.distractors)
        models = [(n, p.replace("{holdout}", h)) for n, p in (m.split("=", 1) for m in args.model)]
        entries = [(n.replace("{holdout}", h), lambda p=p: load_model(p), 60) for n, p in models]
        if args.pixels:
            entries.append(("pixels", _Pixels, 60))
        if args.dlib:
            from hybridface.models.baselines.dlib_encoder import DlibEncoder

            entries.append(("dlib", DlibEncoder, 150))
        for spec_ in args.onnx:
            from hybridface.models.resnet_encoder import ResNetEncoder

            oname, opath = spec_.split("=", 1)
            entries.append((oname, lambda p=opath: ResNetEncoder(p), 150))
        for zname in args.zoo:
            from hybridface.models.zoo import load_encoder

            entries.append((zname, lambda z=zname: load_encoder(z), 150))
        for name, make, size in entries:
            enc = make()
            crops = _crops([*gallery, *probes], split.detect, size, args.cache)
            g = [s for s in gallery if str(s.path) in crops]
            p = [s for s in probes if str(s.path) in crops]
            G = _encode(name, enc, g, crops, args.cache, f"{h}-g-{size}")
            P = _encode(name, enc, p, crops, args.cache, f"{h}-p-{size}")
            sc = _scores(G, [s.identity for s in g], P, [s.identity for s in p], args.seed)
            params, nbytes = _size(enc)
            fps = _speed(enc, [crops[str(s.path)] for s in p[:32]]) if name not in ("dlib", "pixels") else float("nan")
            rows.append((h, name, len({s.identity for s in g}), len(g), len(p), sc, params, nbytes, fps))
            print(f"{h} {name}: {sc}", file=sys.stderr, flush=True)
    command = f"python benchmarks/unseen.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}; "
          f"command: {command}\n")
    if args.json is not None:
        import json

        args.json.write_text(json.dumps({"command": command, "rows": [
            {"rotation": h, "model": name, "ids": ids, "gallery": ng, "probes": np_, **sc, "parameters": params,
             "onnx_bytes": nbytes, "faces_per_s": None if fps != fps else fps}
            for h, name, ids, ng, np_, sc, params, nbytes, fps in rows]}, indent=1) + "\n")
    print("| rotation | model | ids | gallery | probes | Rank-1 | Rank-5 | DIR@FAR 1 % | parameters | ONNX bytes | faces/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for h, name, ids, ng, np_, sc, params, nbytes, fps in rows:
        print(f"| {h} | {name} | {ids} | {ng} | {np_} | {100 * sc['rank1']:.1f} % | {100 * sc['rank5']:.1f} % | "
              f"{100 * sc['dir_far1']:.1f} % | {f'{params:,}' if params else ('5,614,592 (dlib)' if name == 'dlib' else '0')} | "
              f"{f'{nbytes:,}' if nbytes else '-'} | {'-' if fps != fps else f'{fps:,.0f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
