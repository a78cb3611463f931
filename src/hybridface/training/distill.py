"""Train a *general* compressed model: knowledge distillation and/or metric learning, strong augmentation.

Objectives (summed over the rows they apply to):

* distillation (``teacher`` rows): the student's 60-D feature goes through a learned linear
  projection 60 → 128 (training only, dropped at export) and regresses the teacher's 128-D dlib
  descriptor of the same face with :func:`~hybridface.training.losses.cosine_distill_loss`;
  no labels are needed, so unlabeled face photos can be used;
* relational distillation (``relation_weight`` > 0, ``teacher`` rows): the batch's pairwise cosine
  matrix of the student's 60-D feature regresses that of the (centred) teacher descriptors;
* identity loss (labelled rows): ``softmax``, ``arcface`` or ``cosface`` head on the 60-D feature.

Every batch is strongly augmented (:func:`hybridface.faces.augment.strong_augment`): one of the paper's 17
transformations (``hybridface.faces.augment``) with probability ½, a random crop (80–100 % of the
side, resized back), brightness/contrast/per-channel colour jitter and a horizontal flip. The
exported ONNX graph still outputs the L2-normalised 60-D feature (:func:`train.write_model_dir`).
This module loads the data and writes the model; the loop is :func:`hybridface.training.trainer.train`
with :meth:`~hybridface.training.trainer.TrainConfig.general`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, DatasetError
from hybridface.models.preprocess import PreprocessSpec
from hybridface.training.trainer import TrainConfig, train

__all__ = ["train_general", "labelled_rows"]

log = logging.getLogger(__name__)


def train_general(*, out_dir: str | Path, labelled: Sequence[tuple[Sequence[Any], str, str]] = (),
                  unlabeled: str | Path | None = None, unlabeled_limit: int | None = None,
                  teacher: str | None = None, teacher_cache: str | Path = ".cache/hybridface/teacher",
                  loss: str | None = None, arch: str = "paper", epochs: int = 30, lr: float = 2e-3,
                  batch_size: int = 128, seed: int = 0, preprocessing: PreprocessSpec | None = None,
                  data_description: str = "", progress: bool = True, threads: int | None = None,
                  relation_weight: float = 0.0, batchnorm: bool = False) -> dict[str, Any]:
    """Load the data, train (:meth:`TrainConfig.general <hybridface.training.trainer.TrainConfig.general>`)
    and write the model directory ``out_dir``.

    ``labelled``: ``[(samples, detect, prefix)]`` as in :func:`hybridface.training.train.train_sources`
    (use only training/gallery sides: never probe images). ``unlabeled``: a folder of face crops
    (``detect="never"``), a seeded subset of ``unlabeled_limit``. ``teacher="dlib"`` distils the
    dlib descriptor (computed once, cached in ``teacher_cache``) on the unlabeled images and on
    the labelled ones (:func:`labelled_rows`): without ``loss`` the labelled images are distilled
    label-free, with ``loss`` their rows get both objectives.
    Returns the card's ``training`` dict plus ``out_dir``, ``model_id`` and ``onnx_bytes``.
    """
    from hybridface.models.data import load_faces
    from hybridface.training.teacher import select_unlabeled, teacher_descriptors
    from hybridface.training.train import write_model_dir

    spec = preprocessing or PreprocessSpec()
    config = TrainConfig.general(loss=loss, arch=arch, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                 preprocessing=spec, progress=progress, threads=threads,
                                 relation_weight=relation_weight, batchnorm=batchnorm)  # checked before any teacher work
    if teacher is not None and unlabeled is None and not labelled:
        raise ConfigError("--teacher needs images: give --unlabeled DIR and/or labelled DATA_DIRs")
    if teacher is None and loss is None:
        raise ConfigError("choose an objective: --loss softmax|arcface|cosface and/or --teacher dlib")
    parts: list[np.ndarray] = []
    labels: list[str | None] = []
    targets: list[np.ndarray] = []
    labelled_stats: list[dict[str, Any]] = []
    for samples, detect, prefix in labelled:
        imgs, ids, desc, stats = labelled_rows(samples, detect=detect, size=spec.input_size, seed=seed,
                                               teacher=teacher, teacher_cache=teacher_cache,
                                               keep_undistilled=loss is not None, progress=progress)
        parts.append(imgs)
        labels += [f"{prefix}/{x}" if prefix else x for x in ids]
        targets.append(desc)
        labelled_stats.append(stats)
    n_unlabeled = 0
    if unlabeled is not None:
        files = select_unlabeled(unlabeled, limit=unlabeled_limit, seed=seed)
        desc = found = None
        if teacher is not None:
            desc, found = teacher_descriptors(files, cache_dir=teacher_cache, detect="never", progress=progress,
                                              name=teacher)
            files = [f for f, ok in zip(files, found) if ok]
            desc = desc[found]
        imgs, kept, errors = load_faces(files, detect="never", size=spec.input_size, progress=progress)
        for p, e in errors:
            log.warning("skipped %s: %s", p, e)
        parts.append(imgs)
        labels += [None] * len(imgs)
        targets.append(desc[kept] if desc is not None else np.zeros((len(imgs), 128), np.float32))
        n_unlabeled = len(imgs)
    if not parts or sum(len(p) for p in parts) == 0:
        raise DatasetError("no training images could be loaded")
    images = np.ascontiguousarray(np.concatenate(parts))
    result = train(config, images, teacher=np.concatenate(targets) if teacher else None,
                   labels=labels if loss else None)
    training = {
        "data": data_description, "objective": {"loss": loss, "teacher": teacher}, "unlabeled": str(unlabeled or ""),
        "unlabeled_images": n_unlabeled, "unlabeled_limit": unlabeled_limit, "labelled_sources": labelled_stats,
        "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "seed": seed, "relation_weight": relation_weight,
        "augmentation": "strong (17 paper transforms p=0.5, random crop 80-100 %, brightness/contrast/colour jitter, flip)",
        "optimizer": "Adam, one-cycle LR", **result.summary(),
    }
    model_id, size = write_model_dir(result.net, Path(out_dir), spec, training)
    return {**training, "out_dir": str(out_dir), "model_id": model_id, "onnx_bytes": size}


def labelled_rows(samples: Sequence[Any], *, detect: str = "never", size: int = 60, seed: int = 0,
                  teacher: str | None = None, teacher_cache: str | Path = ".cache/hybridface/teacher",
                  keep_undistilled: bool = True, progress: bool = False
                  ) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """Student crops of labelled ``samples`` paired with their teacher descriptors.

    Returns ``(images (m, size, size, 3) uint8, identities, descriptors (m, 128) float32, stats)``
    row by row: a row's descriptor is the teacher's (:func:`~hybridface.training.teacher.teacher_descriptors`,
    cached) of the *same file under the same* ``detect`` *policy and detector* as its student crop,
    so both see the same face box (the teacher at 150x150, the student at ``size``); a sample with
    ``variant > 0`` is an augmented student copy of that face. Files the student cannot crop are
    dropped (:func:`~hybridface.training.train.load_samples`); rows the teacher has no descriptor
    for (no face, or an in-memory image with no file to hash) get a zero descriptor when
    ``keep_undistilled`` (they still serve an identity loss) and are dropped otherwise. Without
    ``teacher`` every descriptor is zero. ``stats``: counts ``samples``, ``student_dropped``,
    ``teacher_dropped`` (rows removed), ``undistilled`` (zero rows kept), ``distilled``; logged.
    Pass training/gallery sides only: never probe images.
    """
    from hybridface.training.train import load_samples

    samples = list(samples)
    imgs, ids, groups, skipped = load_samples(samples, detect=detect, size=size, seed=seed, progress=progress)
    desc = np.zeros((len(imgs), 128), np.float32)
    has = np.zeros(len(imgs), bool)
    if teacher is not None:
        from hybridface.training.teacher import teacher_descriptors

        paths = sorted({g for g in groups if not g.startswith("#array")})
        d, found = teacher_descriptors(paths, cache_dir=teacher_cache, detect=detect, progress=progress, name=teacher)
        lookup = {p: d[i] for i, p in enumerate(paths) if found[i]}
        for r, g in enumerate(groups):
            v = lookup.get(g)
            if v is not None:
                desc[r], has[r] = v, True
    n_student = len(samples) - len(imgs)
    missing = int((~has).sum()) if teacher is not None else 0
    keep = np.ones(len(imgs), bool) if keep_undistilled or teacher is None else has
    stats = {"samples": len(samples), "student_dropped": n_student,
             "teacher_dropped": int((~keep).sum()), "undistilled": int((keep & ~has).sum()) if teacher else 0,
             "distilled": int(has.sum()), "detect": detect}
    if teacher is not None:
        log.info("labelled images (detect=%s): %d samples, %d dropped (student found no face: %d files), "
                 "%d without a teacher descriptor (%s), %d distilled", detect, len(samples),
                 n_student + stats["teacher_dropped"], len(skipped), missing,
                 "kept for the identity loss" if keep_undistilled else "dropped", stats["distilled"])
    idx = np.flatnonzero(keep)
    return np.ascontiguousarray(imgs[idx]), [ids[i] for i in idx], desc[idx], stats
