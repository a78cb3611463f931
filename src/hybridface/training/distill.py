"""Train a *general* compressed model: knowledge distillation and/or metric learning, strong augmentation.

Objectives (summed over the rows they apply to):

* distillation (``teacher`` rows): the student's 60-D feature goes through a learned linear
  projection 60 → 128 (training only, dropped at export) and regresses the teacher's 128-D dlib
  descriptor of the same face with :func:`~hybridface.models.losses.cosine_distill_loss`;
  no labels are needed, so unlabeled face photos can be used;
* relational distillation (``relation_weight`` > 0, ``teacher`` rows): the batch's pairwise cosine
  matrix of the student's 60-D feature regresses that of the (centred) teacher descriptors;
* identity loss (labelled rows): ``softmax``, ``arcface`` or ``cosface`` head on the 60-D feature.

Every batch is strongly augmented (:func:`hybridface.faces.augment.strong_augment`): one of the paper's 17
transformations (``hybridface.faces.augment``) with probability ½, a random crop (80–100 % of the
side, resized back), brightness/contrast/per-channel colour jitter and a horizontal flip. The
exported ONNX graph still outputs the L2-normalised 60-D feature (:func:`train.write_model_dir`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, DatasetError
from hybridface.faces.augment import strong_augment
from hybridface.models.preprocess import PreprocessSpec, preprocess

__all__ = ["fit_general", "train_general", "labelled_rows"]

log = logging.getLogger(__name__)


def _check_relation_weight(w: float) -> None:
    if not w >= 0:
        raise ConfigError(f"relation_weight must be >= 0 (got {w})")


def fit_general(images: np.ndarray, *, teacher: np.ndarray | None = None, labels: Sequence[str | None] | None = None,
                loss: str | None = None, arch: str = "paper", epochs: int = 30, lr: float = 2e-3,
                batch_size: int = 128, seed: int = 0, val_fraction: float = 0.05, distill_weight: float = 1.0,
                preprocessing: PreprocessSpec | None = None, augment: bool = True, progress: bool = True,
                threads: int | None = None, center_teacher: bool = True, relation_weight: float = 0.0,
                batchnorm: bool = False, init_state: dict[str, Any] | None = None):
    """Train on uint8 ``(n, S, S, 3)`` ``images``; return ``(net, info)``.

    ``teacher``: ``(n, 128)`` descriptors with all-zero rows where a row has none (not distilled);
    ``labels``: per row an identity name or ``None`` (not in the identity loss); ``loss``: the
    identity loss (``softmax | arcface | cosface``) or ``None``. Adam with cosine LR decay; a
    seeded ``val_fraction`` of the rows is held out to report teacher cosine / identity accuracy,
    and the weights of the best epoch (by validation teacher cosine, else identity accuracy, else
    the last epoch) are kept. ``threads``: torch intra-op threads (``None``: torch's default).
    ``center_teacher``: subtract the mean teacher descriptor before the cosine loss (see below).
    ``relation_weight``: weight of :func:`~hybridface.models.losses.relational_distill_loss` (0 = off).
    ``batchnorm``: train with a BatchNorm after every conv, folded into the convs before returning
    (:class:`~hybridface.training.variants.BatchNormTrainer`): the returned network is unchanged in shape.
    ``init_state``: a state dict of the same architecture to start from (warm start; the
    classifier layer is not loaded). The teacher projection maps 60-D to the teacher's dimension.
    """
    import torch
    from torch.nn import functional as F

    from hybridface.models.losses import cosine_distill_loss, make_head, relational_distill_loss
    from hybridface.training.variants import BatchNormTrainer, build_network, feature_parameters

    spec = preprocessing or PreprocessSpec()
    n = len(images)
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"epochs and batch_size must be >= 1 and lr > 0 (got {epochs}, {batch_size}, {lr})")
    _check_relation_weight(relation_weight)
    has_t = np.zeros(n, bool) if teacher is None else np.abs(np.asarray(teacher)).sum(1) > 0
    names = sorted({x for x in (labels or []) if x is not None})
    y = np.full(n, -1, np.int64)
    if labels is not None:
        if len(labels) != n:
            raise ConfigError(f"{len(labels)} labels for {n} images")
        index = {k: i for i, k in enumerate(names)}
        y = np.array([-1 if x is None else index[x] for x in labels], np.int64)
    if loss is None and not has_t.any():
        raise DatasetError("nothing to train on: no teacher descriptors and no identity loss")
    if loss is not None and len(names) < 2:
        raise DatasetError(f"--loss {loss} needs labelled images of at least 2 identities, found {len(names)}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = int(round(val_fraction * n)) if n >= 20 else 0
    va, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    net = build_network(arch, 1)
    if init_state is not None:
        net.load_state_dict({k: v for k, v in init_state.items() if not k.startswith("fc3")}, strict=False)
    if batchnorm:
        net = BatchNormTrainer(net)
    proj = torch.nn.Linear(net.fc2.out_features, int(np.shape(teacher)[1]) if teacher is not None else 128)
    head = make_head(loss, net.fc2.out_features, len(names)) if loss else None
    params = list(net.parameters()) + list(proj.parameters()) + (list(head.parameters()) if head else [])
    opt = torch.optim.Adam(params, lr=lr)
    steps = epochs * max(1, -(-len(tr) // batch_size))
    # OneCycleLR divides by zero below ~10 steps (tiny galleries): pad the schedule, warm up >= 2 steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 10),
                                                pct_start=max(0.1, 2.0 / max(steps, 10)))
    t_all = None
    if teacher is not None:
        # dlib descriptors share a large common component (two strangers have cosine ~0.9), so
        # the targets are centred on the training mean and re-normalised: the cosine loss then
        # measures the identity-bearing part instead of rewarding the mean direction.
        t = np.asarray(teacher, np.float32).copy()
        if center_teacher and has_t.any():
            t[has_t] -= t[has_t].mean(0)
            t[has_t] /= np.maximum(np.linalg.norm(t[has_t], axis=1, keepdims=True), 1e-12)
        t_all = torch.from_numpy(t)
    y_all = torch.from_numpy(y)

    def evaluate() -> dict[str, float]:
        out: dict[str, float] = {}
        if not len(va):
            return out
        net.eval()
        with torch.inference_mode():
            f = torch.cat([net.features(torch.from_numpy(preprocess(images[va[i:i + 512]], spec)))
                           for i in range(0, len(va), 512)])
            idx = torch.from_numpy(va)
            m = torch.from_numpy(has_t[va])
            if m.any():
                out["val_teacher_cos"] = float(F.cosine_similarity(proj(f[m]), t_all[idx][m], dim=1).mean())
            lab = y_all[idx] >= 0
            if head is not None and lab.any():
                pred = head.logits(f[lab]).argmax(1)
                out["val_acc"] = float((pred == y_all[idx][lab]).float().mean())
        net.train()
        return out

    from tqdm import tqdm

    best: tuple[float, int, Any] = (-np.inf, 0, None)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        net.train()
        order = rng.permutation(tr)
        tot, count = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb = strong_augment(images[idx], rng) if augment else images[idx]
            f = net.features(torch.from_numpy(preprocess(xb, spec)))
            ti = torch.from_numpy(idx)
            terms = []
            m = torch.from_numpy(has_t[idx])
            if m.any():
                terms.append(distill_weight * cosine_distill_loss(proj(f[m]), t_all[ti][m]))
                if relation_weight > 0 and int(m.sum()) > 1:
                    terms.append(relation_weight * relational_distill_loss(f[m], t_all[ti][m]))
            lab = y_all[ti] >= 0
            if head is not None and lab.any():
                terms.append(head(f[lab], y_all[ti][lab]))
            if not terms:
                continue
            loss_v = sum(terms)
            opt.zero_grad(set_to_none=True)
            loss_v.backward()
            opt.step()
            sched.step()
            tot += float(loss_v.detach()) * len(idx)
            count += len(idx)
        row = {"epoch": epoch, "loss": tot / max(count, 1), **evaluate()}
        history.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "epoch"})
        log.info("epoch %d %s", epoch, {k: round(v, 4) for k, v in row.items() if k != "epoch"})
        score = row.get("val_teacher_cos", row.get("val_acc", float(epoch)))
        if score >= best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
    bar.close()
    net.load_state_dict(best[2])
    net.eval()
    if batchnorm:
        net = net.fold()
    info = {
        "arch": arch, "loss": loss, "teacher_rows": int(has_t.sum()), "labelled_rows": int((y >= 0).sum()),
        "identities": len(names), "batchnorm": bool(batchnorm), "num_train": int(len(tr)),
        "num_val": int(len(va)), "best_epoch": best[1],
        "epochs_run": len(history), "feature_parameters": feature_parameters(net),
        "seconds": round(time.perf_counter() - t0, 1), "history": history, **{
            k: v for k, v in history[best[1] - 1].items() if k.startswith("val_")},
    }
    return net, info


def train_general(*, out_dir: str | Path, labelled: Sequence[tuple[Sequence[Any], str, str]] = (),
                  unlabeled: str | Path | None = None, unlabeled_limit: int | None = None,
                  teacher: str | None = None, teacher_cache: str | Path = ".cache/hybridface/teacher",
                  loss: str | None = None, arch: str = "paper", epochs: int = 30, lr: float = 2e-3,
                  batch_size: int = 128, seed: int = 0, preprocessing: PreprocessSpec | None = None,
                  data_description: str = "", progress: bool = True, threads: int | None = None,
                  relation_weight: float = 0.0, batchnorm: bool = False) -> dict[str, Any]:
    """Load the data, train (:func:`fit_general`) and write the model directory ``out_dir``.

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
    _check_relation_weight(relation_weight)  # before any teacher work
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
            desc, found = teacher_descriptors(files, cache_dir=teacher_cache, detect="never", progress=progress)
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
    net, info = fit_general(images, teacher=np.concatenate(targets) if teacher else None,
                            labels=labels if loss else None, loss=loss, arch=arch, epochs=epochs, lr=lr,
                            batch_size=batch_size, seed=seed, preprocessing=spec, progress=progress,
                            threads=threads, relation_weight=relation_weight, batchnorm=batchnorm)
    training = {
        "data": data_description, "objective": {"loss": loss, "teacher": teacher}, "unlabeled": str(unlabeled or ""),
        "unlabeled_images": n_unlabeled, "unlabeled_limit": unlabeled_limit, "labelled_sources": labelled_stats,
        "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "seed": seed, "relation_weight": relation_weight,
        "augmentation": "strong (17 paper transforms p=0.5, random crop 80-100 %, brightness/contrast/colour jitter, flip)",
        "optimizer": "Adam, one-cycle LR", **{k: v for k, v in info.items() if k != "history"},
    }
    model_id, size = write_model_dir(net, Path(out_dir), spec, training)
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
        d, found = teacher_descriptors(paths, cache_dir=teacher_cache, detect=detect, progress=progress)
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
