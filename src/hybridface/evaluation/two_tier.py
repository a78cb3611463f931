"""The main job's story: enrol with the accurate model, fit the paper's network, identify with both.

``run_two_tier(protocol, datasets_dir, workdir=..., protocol_options={...})`` for any protocol of
:data:`hybridface.protocols.PROTOCOLS` (``vidtimit``: the main job; ``yale-augmented``; ``unseen``
with ``holdout=...``; ``folder`` with ``gallery_per_identity=1, order="first"``, ...):

1. crops every gallery and probe frame of the protocol (its detect policy) and encodes it with the
   default encoder (dlib), in ``workers`` processes (dlib runs one face at a time per core);
2. enrols the gallery side into ``G`` with its face crops kept;
3. ``fit``s the paper's network on ``G`` into ``G2`` (:func:`hybridface.training.fit.fit_gallery`);
4. identifies the probe side against ``G`` (dlib templates) and ``G2`` (fitted-model templates)
   with the same search strategy, and returns one `TierRow` per gallery.

Probes without a usable face count as misses for both.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["TierRow", "TwoTierRun", "run_two_tier", "format_table"]


@dataclass(frozen=True)
class TierRow:
    """One line of the main job's table."""

    model: str
    parameters: int | None
    file_bytes: int
    rank1: float
    encode_ms_per_face: float
    search_ms_per_probe: float


@dataclass(frozen=True)
class TwoTierRun:
    summary: str
    gallery_faces: int
    probes: int
    rows: tuple[TierRow, ...]
    seconds: dict[str, float]
    fit_check: str


_ENCODER: Any = None


def _init_worker(model: str | None) -> None:
    global _ENCODER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # one warning per face-less frame would drown the progress bars; they are counted instead
    logging.getLogger("hybridface.faces.crop").setLevel(logging.ERROR)
    from hybridface.api import load_encoder

    _ENCODER = load_encoder(model)


def _crop_encode(paths: list[str], detect: str, variants: list[int], seeds: list[int]):
    """Worker: crop (at the encoder's size) and encode; returns (80 px crops or None, vectors, errors, seconds)."""
    from hybridface.faces.augment import augment
    from hybridface.faces.crop import load_crops
    from hybridface.gallery.faces import FACE_SIZE
    from hybridface.prepare import crop_size, encode_crops
    import cv2

    outcomes = load_crops(paths, detect=detect, size=crop_size(_ENCODER))
    crops, errors = [], []
    for o, v, s in zip(outcomes, variants, seeds):
        if o.crop is None:
            crops.append(None)
            errors.append(str(o.error or "no face"))
            continue
        img = augment(o.crop.image, v, seed=s) if v else o.crop.image
        crops.append(img)
        errors.append(None)
    good = [c for c in crops if c is not None]
    t0 = time.perf_counter()
    vecs = encode_crops(_ENCODER, good) if good else np.zeros((0, _ENCODER.dim), np.float32)
    enc_s = time.perf_counter() - t0
    small = [None if c is None else cv2.resize(c, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
             for c in crops]
    return small, vecs, errors, enc_s, _ENCODER.model_id


def _encode_side(samples, detect: str, *, model: str | None, workers: int, chunk: int, desc: str, progress: bool):
    from tqdm import tqdm

    samples = list(samples)
    parts = [samples[i:i + chunk] for i in range(0, len(samples), chunk)]
    crops: list[Any] = []
    vecs, errors, enc_s, model_id = [], [], 0.0, ""
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(model,)) as pool:
        futs = [pool.submit(_crop_encode, [str(s.path) for s in p], detect, [s.variant for s in p],
                            [s.seed for s in p]) for p in parts]
        for f in tqdm(futs, desc=desc, unit="chunk", disable=not progress):
            c, v, e, t, model_id = f.result()
            crops += c
            vecs.append(v)
            errors += e
            enc_s += t
    return crops, np.concatenate(vecs), errors, enc_s, model_id


def _gallery_name(identity: str) -> str:
    """A protocol identity as a gallery name (``unseen`` prefixes its dataset: ``att_orl/s1`` -> ``att_orl:s1``)."""
    return identity.replace("/", ":")


def _rank1_and_search(gallery, vecs: np.ndarray, names: list[str], n_probes: int, strategy: str):
    gallery.searcher(strategy=strategy)  # built outside the timed part
    t0 = time.perf_counter()
    answers = gallery.identify_vectors(vecs, strategy=strategy, k=1)
    search_s = time.perf_counter() - t0
    hits = sum(a.identity == n for a, n in zip(answers, names))
    return hits / max(n_probes, 1), 1000 * search_s / max(len(vecs), 1)


def _onnx_parameters(path) -> int | None:
    """Number of weights stored in an ONNX file (``None`` without the ``onnx`` package)."""
    try:
        import onnx
    except ImportError:
        return None
    return int(sum(np.prod(t.dims) for t in onnx.load(str(path)).graph.initializer))


def run_two_tier(protocol: str, data_dir: str | os.PathLike, *, workdir: str | os.PathLike,
                 model: str | None = None, strategy: str = "hybrid", workers: int | None = None,
                 chunk: int = 64, fit_options: dict[str, Any] | None = None, seed: int = 0,
                 protocol_options: dict[str, Any] | None = None, progress: bool = True) -> TwoTierRun:
    """Run the two tiers on ``protocol`` (built with ``protocol_options``; see module docstring);
    galleries go to ``workdir`` as ``<protocol>.db`` and ``<protocol>-fit.db``."""
    from hybridface.api import open_gallery
    from hybridface.models.encoders import OnnxEncoder
    from hybridface.protocols import get_protocol
    from hybridface.training.fit import fit_gallery

    workers = workers or max(1, os.cpu_count() or 1)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    split = get_protocol(protocol, Path(data_dir), seed=seed, **(protocol_options or {}))
    log.info("%s", split.summary())
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    g_side = [*split.gallery, *split.distractors]
    g_crops, g_vecs, g_err, g_enc, model_id = _encode_side(g_side, split.detect, model=model, workers=workers,
                                                           chunk=chunk, desc="enrol: crop+encode", progress=progress)
    p_crops, p_vecs, p_err, p_enc, _ = _encode_side(split.probes, split.detect, model=model, workers=workers,
                                                    chunk=chunk, desc="probes: crop+encode", progress=progress)
    seconds["crop_encode"] = time.perf_counter() - t0
    db, db2 = wd / f"{protocol}.db", wd / f"{protocol}-fit.db"
    for p in (db, db2):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{p}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    ok = [i for i, c in enumerate(g_crops) if c is not None]
    by_id: dict[str, list[int]] = defaultdict(list)
    for row, i in enumerate(ok):
        by_id[_gallery_name(g_side[i].identity)].append(row)
    with open_gallery(db, create=True) as g:
        for ident, rows in by_id.items():
            g.enroll_vectors(ident, g_vecs[rows], model_id=model_id,
                             sources=[str(g_side[ok[r]].path) for r in rows],
                             hashes=[f"{g_side[ok[r]].path.name}/{g_side[ok[r]].variant}" for r in rows],
                             faces=[g_crops[ok[r]] for r in rows])
    seconds["enrol"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = fit_gallery(db, db2, progress=progress, seed=seed, **(fit_options or {}))
    seconds["fit"] = time.perf_counter() - t0

    p_ok = [i for i, c in enumerate(p_crops) if c is not None]
    p_names = [_gallery_name(split.probes[i].identity) for i in p_ok]
    n_probes = len(split.probes)
    rows = []
    with open_gallery(db, readonly=True) as g:
        r1, search_ms = _rank1_and_search(g, p_vecs, p_names, n_probes, strategy)
        from hybridface.models.default import DLIB_PREFIX

        enc = g.encoder
        onnx_file = getattr(enc, "path_", None)
        if model_id.startswith(DLIB_PREFIX) and onnx_file is not None:  # the exact ONNX Runtime port
            name, params, size = "dlib ResNet (ONNX port)", _onnx_parameters(onnx_file), Path(onnx_file).stat().st_size
        elif model_id.startswith(DLIB_PREFIX):  # dlib's own runtime
            from hybridface.models.baselines.dlib_encoder import default_model_files

            w, sp = default_model_files()
            name, params, size = "dlib ResNet (dlib runtime)", None, Path(w).stat().st_size + Path(sp).stat().st_size
        else:
            name, params = f"{model_id[:12]} (enrolment)", None
            size = Path(onnx_file).stat().st_size if onnx_file else 0
        rows.append(TierRow(name, params, size, r1, 1000 * (g_enc + p_enc) / max(len(ok) + len(p_ok), 1),
                            search_ms))
    fitted = OnnxEncoder(rep.model_dir, threads=1)
    probe_faces = np.stack([p_crops[i] for i in p_ok])
    fitted.encode(probe_faces[:64])  # warm-up
    t0 = time.perf_counter()
    f_vecs = fitted.encode(probe_faces)
    f_enc_ms = 1000 * (time.perf_counter() - t0) / max(len(p_ok), 1)
    with open_gallery(db2, readonly=True) as g2:
        r1, search_ms = _rank1_and_search(g2, f_vecs, p_names, n_probes, strategy)
    rows.append(TierRow("paper network, fitted on G", int(rep.training.get("feature_parameters", 0)),
                        rep.onnx_bytes, r1, f_enc_ms, search_ms))
    skipped = sum(e is not None for e in g_err) + sum(e is not None for e in p_err)
    summary = f"{split.summary()}; {skipped} frames without a detected face (gallery: skipped, probes: misses)"
    return TwoTierRun(summary, len(ok), n_probes, tuple(rows), seconds, rep.check.verdict)


def format_table(run: TwoTierRun) -> str:
    lines = ["| model | parameters | file size | Rank-1 | encode ms/face | search ms/probe |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in run.rows:
        params = f"{r.parameters:,}" if r.parameters else "n/a"
        lines.append(f"| {r.model} | {params} | {r.file_bytes / 1e6:.2f} MB | {100 * r.rank1:.2f} % | "
                     f"{r.encode_ms_per_face:.3f} | {r.search_ms_per_probe:.4f} |")
    return "\n".join(lines)
