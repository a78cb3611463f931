"""``hybridface fit``: the paper's network trained on one gallery's own faces, written as a new gallery.

Given a gallery G enrolled with an accurate encoder (dlib by default) *and its kept face crops*
(:mod:`hybridface.gallery.faces`), :func:`fit_gallery` trains the paper's exact compressed network
(a K-way classifier over G's K identities during training; the exported graph ends at the 60-D
feature) with

* cross-entropy over G's identities, plus
* distillation to G's own templates as the teacher: centred cosine to a learned projection and the
  relational (pairwise-cosine) term (:func:`hybridface.training.trainer.train`, ``TrainConfig.general``),
* the paper's 17 augmentations (p = ½) and random crop/zoom, brightness/contrast/colour jitter, flip.

**Self-check.** The last ``hold_out`` share of each identity's faces (enrolment order, so frames
of a video are held out from its end, not interleaved) is never trained on. Held-out Rank-1 is
measured for the fitted model and for G's own encoder (G's stored templates: no dlib needed); if
the fitted model is more than ``max_drop`` points worse, or nothing could be held out, the fit is
refused (:class:`~hybridface.errors.SelfCheckError`) unless ``force``; the card records the check.

**Output.** A model directory ``<out>.model-<id12>/`` (``model.onnx`` + card, optionally
``model.int8.onnx``) and the gallery ``out`` encoded by it, with its LBG codebooks, recording the
model directory (so ``identify --db out`` needs no ``--model``). Everything is written to temporary
names and renamed at the end: Ctrl-C or SIGKILL leaves G untouched (it is opened read-only) and
never a half-written ``out``. Re-running with an existing fitted ``out`` starts from its model
(warm start) and replaces it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, DatasetError, GalleryError, SelfCheckError

log = logging.getLogger(__name__)

__all__ = ["FitReport", "SelfCheck", "fit_gallery", "split_held_out"]

#: gallery meta key: the fitted model directory, relative to the gallery file's folder
MODEL_PATH_KEY = "model_path"


@dataclass(frozen=True)
class SelfCheck:
    """Held-out Rank-1 of the fitted model vs the gallery's own encoder (fractions; NaN when nothing held out)."""

    held_out: int
    trained_on: int
    fitted_rank1: float
    gallery_rank1: float
    max_drop_points: float
    passed: bool
    verdict: str


@dataclass(frozen=True)
class FitReport:
    """Outcome of :func:`fit_gallery` (``written`` is False only if a refused check was not forced)."""

    out: Path
    model_dir: Path
    model_id: str
    onnx_bytes: int
    int8_bytes: int | None
    identities: int
    faces: int
    epochs: int
    seconds: float
    warm_start: str | None
    check: SelfCheck
    training: dict[str, Any] = field(default_factory=dict, repr=False)


def split_held_out(identities: tuple[str, ...] | list[str], share: float) -> np.ndarray:
    """Boolean mask of held-out rows: the last ``share`` (at least one) of each identity's rows, in
    row order, for identities with at least 2 rows; an identity with one row is never held out."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"hold-out share must be in [0, 1), got {share}")
    ids = np.asarray(identities)
    held = np.zeros(len(ids), bool)
    if share == 0:
        return held
    for name in np.unique(ids):
        rows = np.flatnonzero(ids == name)
        if len(rows) < 2:
            continue
        k = min(len(rows) - 1, max(1, int(round(share * len(rows)))))
        held[rows[-k:]] = True
    return held


def _rank1(gallery: np.ndarray, g_ids: np.ndarray, probes: np.ndarray, p_ids: np.ndarray) -> float:
    from hybridface.training.export import rank1

    return rank1(gallery, g_ids, probes, p_ids)


def _check(fitted: np.ndarray, teacher: np.ndarray, ids: np.ndarray, held: np.ndarray, max_drop: float) -> SelfCheck:
    tr = ~held
    n_held = int(held.sum())
    if n_held == 0:
        return SelfCheck(0, int(tr.sum()), float("nan"), float("nan"), max_drop, False,
                         "no face could be held out (every identity has a single face), so the fitted model "
                         "cannot be checked; a one-photo-per-person gallery is not what fit is for")
    f = _rank1(fitted[tr], ids[tr], fitted[held], ids[held])
    g = _rank1(teacher[tr], ids[tr], teacher[held], ids[held])
    drop = 100.0 * (g - f)
    ok = drop <= max_drop
    verdict = (f"held-out Rank-1 {100 * f:.2f} % (fitted) vs {100 * g:.2f} % (gallery encoder) on {n_held} faces: "
               + ("within" if ok else "MORE than") + f" {max_drop:g} points")
    return SelfCheck(n_held, int(tr.sum()), f, g, max_drop, ok, verdict)


def _previous_model(out: Path) -> Path | None:
    """The model directory of an existing fitted gallery at ``out`` (for warm start), or None."""
    from hybridface.gallery.store import GalleryStore

    if not out.exists():
        return None
    with GalleryStore(out, readonly=True) as g2:  # refuses anything that is not a gallery
        rel = g2.info(MODEL_PATH_KEY)
    if rel is None:
        raise GalleryError(f"{out} is a gallery that fit did not write; choose another --out (it is never replaced)")
    path = out.parent / rel
    return path if path.is_dir() else None


def _load_gallery(db: Path):
    """``(kept faces, teacher templates aligned with them, template hashes, sources, G model id)``; clear errors."""
    from hybridface.gallery.faces import CROP_VERSION
    from hybridface.gallery.store import GalleryStore

    with GalleryStore(db, readonly=True) as g:
        model_id = g.model_id
        names = [n for n, c in g.identities() if c > 0]
        if len(names) < 2:
            raise DatasetError(f"gallery {db} has {len(names)} identit{'y' if len(names) == 1 else 'ies'} with "
                               "templates; fit trains a classifier and needs at least 2")
        faces = g.kept_faces()
        if len(faces) == 0:
            raise DatasetError(f"gallery {db} keeps no face crops (enrolled with --no-keep-faces, or by an older "
                               "hybridface); re-enrol the people without --no-keep-faces to fit on them")
        if faces.versions != (CROP_VERSION,):
            raise DatasetError(f"gallery {db} keeps faces of crop version {', '.join(faces.versions)}; this "
                               f"hybridface trains on {CROP_VERSION}: re-enrol the people into a new gallery")
        m = g.load_matrix()
        meta = {tid: (src, h) for n in names for tid, src, h in g.templates(n)}
    row = {int(t): i for i, t in enumerate(m.template_ids)}
    teacher = np.stack([m.vectors[row[int(t)]] for t in faces.template_ids]).astype(np.float32)
    ids = np.asarray(faces.identities)
    if len(np.unique(ids)) < 2:
        raise DatasetError(f"gallery {db} keeps faces of only {len(np.unique(ids))} identity; fit needs at least 2")
    return faces, teacher, ids, [meta[int(t)] for t in faces.template_ids], model_id


def _write_int8(model_dir: Path, calib_faces: np.ndarray) -> int:
    from hybridface.models.card import ModelCard, library_versions, load_card, sha256_file, write_card
    from hybridface.training.export import quantize_int8
    from hybridface.models.preprocess import preprocess

    card, fp32 = load_card(model_dir)
    target = model_dir / "model.int8.onnx"
    idx = np.unique(np.linspace(0, len(calib_faces) - 1, min(300, len(calib_faces))).astype(int))
    size = quantize_int8(fp32, target, preprocess(calib_faces[idx], card.spec))
    write_card(ModelCard(model_id=sha256_file(target), onnx_file=target.name, input_size=card.input_size,
                         embedding_dim=card.embedding_dim, preprocessing=card.preprocessing, precision="int8",
                         input_name=card.input_name, output_name=card.output_name,
                         training={**card.training, "quantized_from": card.model_id,
                                   "calibration": {"data": "the gallery's kept faces", "images": int(len(idx))}},
                         versions=library_versions()), model_dir / "model.int8.json")
    return size


def _write_gallery(path: Path, encoder, faces, ids: np.ndarray, meta, *, model_rel: str, source_db: Path,
                   codewords: int) -> None:
    """The fitted gallery: every kept face encoded by the fitted model, LBG codebooks, no faces kept."""
    from hybridface.gallery.store import GalleryStore

    vecs = encoder.encode(faces.images)
    with GalleryStore(path, create=True) as g2:
        g2.set_info("keep_faces", "0")  # a device gallery: templates only
        g2.set_info(MODEL_PATH_KEY, model_rel)
        g2.set_info("fitted_from", str(source_db.resolve()))
        for name in dict.fromkeys(ids.tolist()):
            rows = np.flatnonzero(ids == name)
            g2.add_templates(name, vecs[rows], [meta[i][1] for i in rows], model_id=encoder.model_id,
                             sources=[meta[i][0] for i in rows], codewords=codewords)


def fit_gallery(db: str | os.PathLike, out: str | os.PathLike, *, epochs: int | None = None,
                lr: float | None = None, batch_size: int = 128, hold_out: float = 0.2, max_drop: float = 2.0,
                force: bool = False, int8: bool = False, warm_start: str | os.PathLike | bool = True,
                relation_weight: float = 1.0, batchnorm: bool = False, channels: str = "rgb",
                illumination: str = "none",
                codewords: int = 1, seed: int = 0, threads: int | None = None, progress: bool = True,
                command: str | None = None) -> FitReport:
    """Train the paper's network on gallery ``db``'s kept faces and write the gallery ``out`` (see module doc).

    ``epochs``/``lr``: default 100 / 3e-3 from scratch, 10 / 1e-3 on a warm start. ``warm_start``:
    ``True`` = from the model of an existing fitted ``out`` when there is one; ``False`` = from
    scratch; a model directory = from that model. ``hold_out``: share of each identity's faces held
    out for the self-check; ``relation_weight``: weight of the relational distillation term (on the
    VidTIMIT main job at 100 epochs, 1.0 gave 96.57 % probe Rank-1 and 5.0 gave 96.41 %); ``batchnorm``:
    BatchNorm while training, folded into the weights after (same parameters); ``max_drop``:
    points of held-out Rank-1 the fitted model may lose to the
    gallery's encoder; ``force``: write even when the check fails (the card says so).
    """
    from hybridface.models.card import load_card
    from hybridface.models.encoders import OnnxEncoder
    from hybridface.models.compressed import network_from_onnx
    from hybridface.models.preprocess import PreprocessSpec
    from hybridface.training.train import write_model_dir
    from hybridface.training.trainer import TrainConfig, train

    t0 = time.perf_counter()
    db, out = Path(db), Path(out)
    if out.resolve() == db.resolve():
        raise ConfigError(f"--out must be a new gallery, not the source {db} (fit never modifies it)")
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"--out {out}: give a gallery file path in an existing folder")
    spec = PreprocessSpec(channels=channels, illumination=illumination)
    faces, teacher, ids, meta, g_model = _load_gallery(db)
    previous = _previous_model(out)
    init = None
    if warm_start is True:
        init = previous
    elif warm_start not in (False, None):
        init = Path(warm_start)
    init_state = None
    if init is not None:
        card, onnx_path = load_card(init)
        if card.spec != spec:
            log.warning("warm start from %s skipped: it was trained with preprocessing %s, not %s", init,
                        card.preprocessing, spec.to_dict())
            init = None
        else:
            init_state = network_from_onnx(onnx_path).state_dict()
    epochs = int(epochs if epochs is not None else (10 if init_state is not None else 100))
    lr = float(lr if lr is not None else (1e-3 if init_state is not None else 3e-3))
    held = split_held_out(ids, hold_out)
    if not held.any() and not force:  # refuse before training: nothing could check the result
        raise SelfCheckError(f"fit refused: {_check(teacher, teacher, ids, held, max_drop).verdict}. Nothing was "
                             f"written; enrol several faces per person (e.g. an enrolment clip), or pass --force "
                             f"to write {out} unchecked")
    tr = np.flatnonzero(~held)
    log.info("fit: %d faces of %d identities from %s (%d trained on, %d held out)%s", len(ids),
             len(np.unique(ids)), db, len(tr), int(held.sum()), f"; warm start from {init}" if init else "")
    config = TrainConfig.general(loss="softmax", arch="paper", epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                 preprocessing=spec, progress=progress, threads=threads,
                                 relation_weight=relation_weight, batchnorm=batchnorm)
    result = train(config, faces.images[tr], teacher=teacher[tr], labels=ids[tr].tolist(), init_state=init_state)
    net = result.net
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.fit-", dir=out.parent))
    tmp_db = out.parent / f".{out.name}.fit-{os.getpid()}-{int(time.time() * 1e6)}.db"
    try:
        training: dict[str, Any] = {
            "data": f"kept faces of gallery {db.resolve()}", "objective": {"loss": "softmax", "teacher": g_model},
            "gallery": str(db.resolve()), "gallery_model_id": g_model, "gallery_identities": int(len(np.unique(ids))),
            "gallery_faces": int(len(ids)), "held_out_share": hold_out, "epochs": epochs, "lr": lr,
            "batch_size": batch_size, "seed": seed, "relation_weight": relation_weight, "batchnorm": batchnorm,
            "warm_start": str(init) if init is not None else None,
            "augmentation": "strong (17 paper transforms p=0.5, random crop 80-100 %, brightness/contrast/colour "
                            "jitter, flip)",
            "optimizer": "Adam, one-cycle LR", "command": command or "Gallery.fit",
            **result.summary(),
        }
        write_model_dir(net, work / "model", spec, {**training, "self_check": "pending"})
        enc = OnnxEncoder(work / "model")
        check = _check(enc.encode(faces.images), teacher, ids, held, max_drop)
        training["self_check"] = {**asdict(check), "forced": bool(force and not check.passed)}
        training["intended_use"] = ("closed set: the identities of the gallery it was fitted on, probed in the "
                                    "conditions they were enrolled in; not for people it never saw")
        if not check.passed:
            training["intended_use"] += "; WARNING: its self-check FAILED (" + check.verdict + ")"
        if not check.passed and not force:
            raise SelfCheckError(f"fit refused: {check.verdict}; the gallery's own encoder is the better choice "
                                 f"here. Nothing was written; pass --force to write {out} anyway")
        model_id, onnx_bytes = write_model_dir(net, work / "model", spec, training)  # the final card
        int8_bytes = _write_int8(work / "model", faces.images) if int8 else None
        enc = OnnxEncoder(work / "model")
        model_dir = out.parent / f"{out.name}.model-{model_id[:12]}"
        _write_gallery(tmp_db, enc, faces, ids, meta, model_rel=model_dir.name, source_db=db, codewords=codewords)
        # commit: the model directory first (content-addressed name), then the gallery by one rename
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.chmod(work / "model", 0o755)  # mkdtemp made it private
        os.replace(work / "model", model_dir)
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp_db}{suffix}").unlink(missing_ok=True)
        os.replace(tmp_db, out)
        if previous is not None and previous.resolve() != model_dir.resolve():
            shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp_db}{suffix}").unlink(missing_ok=True)
    log.info("fit: wrote %s and %s (%s)", out, model_dir, check.verdict)
    return FitReport(out=out, model_dir=model_dir, model_id=model_id, onnx_bytes=onnx_bytes, int8_bytes=int8_bytes,
                     identities=int(len(np.unique(ids))), faces=int(len(ids)), epochs=epochs,
                     seconds=time.perf_counter() - t0, warm_start=str(init) if init is not None else None,
                     check=check, training=training)
