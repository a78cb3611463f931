"""Train the compressed VGGFace network as in the paper and write a model directory.

Softmax cross-entropy over the training identities, Adam (lr 1e-4 by default; the authors'
graph used 1e-3), batch 100, no dropout, no weight decay, fixed seeds, a stratified held-out
validation split (by source image, so augmented copies never straddle it), early stopping on
validation accuracy. Images are loaded and cropped once into a uint8 array. The model directory
(``model.onnx`` + ``model.json``) is written to a temporary folder and renamed into place, so a
failed or interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.cache import replace_dir
from hybridface.errors import ConfigError, DatasetError
from hybridface.models.preprocess import PreprocessSpec, preprocess

__all__ = ["TrainReport", "train_model", "train_sources", "write_model_dir", "fit_arrays", "stratified_split", "load_samples"]

log = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainReport:
    """Outcome of a training run (also summarised in the model card's ``training``)."""

    out_dir: Path
    model_id: str
    val_accuracy: float | None
    train_accuracy: float
    best_epoch: int
    epochs_run: int
    num_train: int
    num_val: int
    identities: tuple[str, ...]
    onnx_bytes: int
    seconds: float
    skipped: tuple[tuple[str, str], ...] = ()
    history: tuple[dict[str, float], ...] = field(default=(), repr=False)


def _sample_fields(s: Any) -> tuple[Any, str, int]:
    """(source, identity, variant) from a protocol ``Sample`` or a ``(source, identity[, variant])`` tuple."""
    if hasattr(s, "identity") and hasattr(s, "path"):
        return s.path, str(s.identity), int(getattr(s, "variant", 0) or 0)
    if isinstance(s, (tuple, list)) and len(s) in (2, 3):
        return s[0], str(s[1]), int(s[2]) if len(s) == 3 else 0
    raise ConfigError(f"a training sample must be (image_or_path, identity[, variant]) or a Sample, got {s!r}")


def load_samples(samples: Sequence[Any], *, detect: str = "never", size: int = 60, seed: int = 0,
                 progress: bool = False) -> tuple[np.ndarray, list[str], list[str], list[tuple[str, str]]]:
    """Load samples once → ``(images uint8 (n,S,S,3), identities, group keys, skipped [(path, reason)])``.

    Each unique path is read and cropped once; a sample with ``variant > 0`` is that crop passed
    through :func:`hybridface.faces.augment.augment`. Group keys (the source path) keep augmented
    copies of one image on the same side of the validation split.
    """
    from hybridface.models.data import load_faces

    rows = [_sample_fields(s) for s in samples]
    if not rows:
        raise DatasetError("no training samples: the dataset (or protocol gallery) is empty")
    paths = sorted({str(src) for src, _, _ in rows if isinstance(src, (str, Path))})
    crops: dict[str, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    if paths:
        imgs, kept, errors = load_faces(paths, detect=detect, size=size, progress=progress)
        crops = {paths[i]: imgs[j] for j, i in enumerate(kept)}
        skipped = [(p, str(e)) for p, e in errors]
        for p, why in skipped:
            log.warning("skipped %s", why if why.startswith(p) else f"{p}: {why}")
    images: list[np.ndarray] = []
    ids: list[str] = []
    groups: list[str] = []
    augment = None
    for k, (src, ident, variant) in enumerate(rows):
        if isinstance(src, (str, Path)):
            img = crops.get(str(src))
            if img is None:
                continue
            key = str(src)
        else:
            img = preprocess_uint8(np.asarray(src), size)
            key = f"#array{k}"
        if variant:
            if augment is None:
                from hybridface.faces.augment import augment
            img = augment(img, variant, seed=seed)
        images.append(img)
        ids.append(ident)
        groups.append(key)
    if not images:
        raise DatasetError(f"none of the {len(rows)} training images could be read (first problem: "
                           f"{skipped[0][1] if skipped else 'none'})")
    return np.ascontiguousarray(np.stack(images)), ids, groups, skipped


def preprocess_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """An in-memory image → ``(size, size, 3)`` uint8 RGB (grey replicated, resized INTER_AREA)."""
    import cv2

    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ConfigError(f"in-memory training images must be uint8 (H, W[, 3]), got {img.dtype} {img.shape}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def stratified_split(ids: Sequence[str], groups: Sequence[str], val_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/val row indices: per identity, ``round(val_fraction * n_groups)`` source images go to
    validation (at least one when the identity has ≥ 2 and ``val_fraction > 0``)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_id: dict[str, dict[str, list[int]]] = {}
    for i, (ident, g) in enumerate(zip(ids, groups)):
        by_id.setdefault(ident, {}).setdefault(g, []).append(i)
    train: list[int] = []
    val: list[int] = []
    for ident in sorted(by_id):
        keys = sorted(by_id[ident])
        rng.shuffle(keys)
        n_val = int(round(val_fraction * len(keys)))
        if val_fraction > 0 and len(keys) >= 2:
            n_val = min(max(n_val, 1), len(keys) - 1)
        else:
            n_val = 0
        for j, g in enumerate(keys):
            (val if j < n_val else train).extend(by_id[ident][g])
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def _accuracy(net, images: np.ndarray, labels: np.ndarray, spec: PreprocessSpec, batch: int = 500) -> float:
    import torch

    if len(images) == 0:
        return float("nan")
    correct = 0
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(preprocess(images[i:i + batch], spec))
            correct += int((net(x).argmax(1).numpy() == labels[i:i + batch]).sum())
    return correct / len(images)


def fit_arrays(images: np.ndarray, ids: Sequence[str], groups: Sequence[str] | None = None, *,
               epochs: int = 100, lr: float = 1e-4, val_fraction: float = 0.2, seed: int = 0,
               batch_size: int = 100, patience: int = 15, preprocessing: PreprocessSpec | None = None,
               augment_on_the_fly: float = 0.0, progress: bool = True, threads: int | None = None,
               lr_schedule: str = "constant", center_loss: float = 0.0):
    """Train on a uint8 ``(n, S, S, 3)`` array; return ``(net, info dict)`` with the best-val weights.

    ``augment_on_the_fly``: probability (``True`` = 1) that a training image is replaced, each
    epoch, by a random one of the 17 transformations of :mod:`hybridface.faces.augment`.
    ``threads``: PyTorch intra-op threads for this run (``None``: leave PyTorch's setting).
    ``lr_schedule``: ``constant`` or ``cosine`` (per-step cosine decay from ``lr`` to 0 over ``epochs``).
    ``center_loss``: weight of a cosine centre loss on the FC-60 feature added to the cross-entropy
    (one learned centre per identity, training-only: the network is unchanged); 0 = plain CE.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    from torch.nn import functional as F

    from hybridface.models.compressed import CompressedVGGFace

    spec = preprocessing or PreprocessSpec()
    if lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown lr schedule {lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
    if epochs < 1 or batch_size < 1 or patience < 1 or not lr > 0:
        raise ConfigError(f"epochs, batch_size, patience must be >= 1 and lr > 0 "
                          f"(got {epochs}, {batch_size}, {patience}, {lr})")
    names = tuple(sorted(set(ids)))
    if len(names) < 2:
        raise DatasetError(f"training needs at least 2 identities, found {len(names)}: {list(names)}")
    labels = np.array([names.index(i) for i in ids], dtype=np.int64)
    groups = list(groups) if groups is not None else [f"#{i}" for i in range(len(ids))]
    tr, va = stratified_split(ids, groups, val_fraction, seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = CompressedVGGFace(len(names))
    if not center_loss >= 0:
        raise ConfigError(f"center_loss must be >= 0, got {center_loss}")
    centres = torch.nn.Parameter(torch.randn(len(names), net.fc2.out_features)) if center_loss > 0 else None
    params = list(net.parameters()) + ([centres] if centres is not None else [])
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    x_tr, y_tr, x_va, y_va = images[tr], labels[tr], images[va], labels[va]
    steps_per_epoch = -(-len(x_tr) // batch_size)
    sched = None
    if lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
    aug = None
    p_aug = float(augment_on_the_fly)
    if not 0.0 <= p_aug <= 1.0:
        raise ConfigError(f"augmentation probability must be in [0, 1], got {augment_on_the_fly}")
    if p_aug > 0:
        from hybridface.faces.augment import NUM_VARIANTS, augment as aug
    best = (-1.0, 0, None)
    history: list[dict[str, float]] = []
    from tqdm import tqdm

    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        net.train()
        order = rng.permutation(len(x_tr))
        tot_loss, tot_correct = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb = x_tr[idx]
            if aug is not None:
                variants = np.where(rng.random(len(idx)) < p_aug, rng.integers(1, NUM_VARIANTS, size=len(idx)), 0)
                xb = np.stack([aug(im, int(v), seed=int(rng.integers(1 << 30))) if v else im
                               for im, v in zip(xb, variants)])
            x = torch.from_numpy(preprocess(xb, spec))
            y = torch.from_numpy(y_tr[idx])
            feats = net.features(x)
            logits = net.fc3(feats)
            loss = F.cross_entropy(logits, y)
            if centres is not None:
                diff = F.normalize(feats, dim=1) - F.normalize(centres, dim=1)[y]
                loss = loss + float(center_loss) * diff.pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot_loss += float(loss.detach()) * len(idx)
            tot_correct += int((logits.argmax(1) == y).sum())
        train_acc = tot_correct / len(x_tr)
        val_acc = _accuracy(net, x_va, y_va, spec) if len(x_va) else train_acc
        history.append({"epoch": epoch, "loss": tot_loss / len(x_tr), "train_acc": train_acc, "val_acc": val_acc,
                        "lr": float(opt.param_groups[0]["lr"])})
        bar.set_postfix(loss=f"{tot_loss / len(x_tr):.3f}", acc=f"{train_acc:.3f}", val=f"{val_acc:.3f}")
        log.debug("epoch %d loss %.4f acc %.4f val %.4f", epoch, tot_loss / len(x_tr), train_acc, val_acc)
        if val_acc >= best[0]:  # ties: the later epoch (further down the lr schedule)
            best = (val_acc, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
        elif epoch - best[1] >= patience:
            log.info("early stop at epoch %d (best val %.4f at epoch %d)", epoch, best[0], best[1])
            break
    bar.close()
    net.load_state_dict(best[2])
    net.eval()
    info = {
        "identities": names, "num_train": int(len(tr)), "num_val": int(len(va)), "best_epoch": best[1],
        "epochs_run": len(history), "val_accuracy": best[0] if len(va) else None,
        "train_accuracy": history[best[1] - 1]["train_acc"], "history": history,
    }
    return net, info


def write_model_dir(net, out_dir: Path, spec: PreprocessSpec, training: dict[str, Any]) -> tuple[str, int]:
    """Write ``model.onnx`` + ``model.json`` to a temp dir beside ``out_dir`` and rename it into place."""
    from hybridface.models.card import MODEL_STEM, ModelCard, library_versions, sha256_file, write_card
    from hybridface.models.compressed import FEATURE_DIM
    from hybridface.training.export import INPUT_NAME, OUTPUT_NAME, export_onnx

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / f"{MODEL_STEM}.json").is_file():
        raise ConfigError(f"--out {out_dir} is a non-empty folder that is not a model directory; choose another path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        onnx_path = tmp / f"{MODEL_STEM}.onnx"
        size = export_onnx(net, onnx_path, input_size=spec.input_size)
        card = ModelCard(model_id=sha256_file(onnx_path), onnx_file=onnx_path.name, input_size=spec.input_size,
                         embedding_dim=FEATURE_DIM, preprocessing=spec.to_dict(), precision="fp32",
                         input_name=INPUT_NAME, output_name=OUTPUT_NAME, training=training,
                         versions=library_versions())
        write_card(card, tmp / f"{MODEL_STEM}.json")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card.model_id, size


def train_model(samples: Sequence[Any], *, out_dir: str | Path, detect: str = "never",
                data_description: str = "", **options: Any) -> TrainReport:
    """Train on ``samples`` and write the model directory ``out_dir``; return a :class:`TrainReport`.

    ``samples``: protocol ``Sample`` objects (``path``, ``identity``, ``variant``) or tuples
    ``(path_or_uint8_image, identity[, variant])``. Unreadable files are reported and skipped.
    ``options``: ``epochs, lr, val_fraction, seed, batch_size, patience, preprocessing,
    augment_on_the_fly, progress`` (see :func:`train_sources`).
    """
    return train_sources([(samples, detect, "")], out_dir=out_dir, data_description=data_description, **options)


def train_sources(sources: Sequence[tuple[Sequence[Any], str, str]], *, out_dir: str | Path, epochs: int = 100,
                  lr: float = 1e-4, val_fraction: float = 0.2, seed: int = 0, batch_size: int = 100,
                  patience: int = 15, preprocessing: PreprocessSpec | None = None,
                  augment_on_the_fly: float = 0.0, data_description: str = "",
                  progress: bool = True, threads: int | None = None, lr_schedule: str = "constant") -> TrainReport:
    """Train on several datasets at once: ``sources`` = ``[(samples, detect, prefix), ...]``.

    Each source is loaded with its own face-detection policy; identities are prefixed with
    ``prefix + "/"`` when ``prefix`` is non-empty (so ``s1`` of two datasets stay apart).
    """
    t0 = time.perf_counter()
    spec = preprocessing or PreprocessSpec()
    parts, ids, groups, skipped = [], [], [], []
    for samples, detect, prefix in sources:
        imgs, i, g, sk = load_samples(samples, detect=detect, size=spec.input_size, seed=seed, progress=progress)
        parts.append(imgs)
        ids += [f"{prefix}/{x}" if prefix else x for x in i]
        groups += g
        skipped += sk
    images = np.concatenate(parts) if len(parts) > 1 else parts[0]
    log.info("training on %d images of %d identities (%d files skipped)", len(images), len(set(ids)), len(skipped))
    net, info = fit_arrays(images, ids, groups, epochs=epochs, lr=lr, val_fraction=val_fraction, seed=seed,
                           batch_size=batch_size, patience=patience, preprocessing=spec,
                           augment_on_the_fly=augment_on_the_fly, progress=progress, threads=threads,
                           lr_schedule=lr_schedule)
    detects = sorted({d for _, d, _ in sources})
    training = {
        "data": data_description, "identities": list(info["identities"]), "num_train": info["num_train"],
        "num_val": info["num_val"], "val_accuracy": info["val_accuracy"], "train_accuracy": info["train_accuracy"],
        "best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"], "epochs": epochs, "lr": lr,
        "lr_schedule": lr_schedule,
        "batch_size": batch_size, "patience": patience, "val_fraction": val_fraction, "seed": seed,
        "detect": detects[0] if len(detects) == 1 else detects, "augment_on_the_fly": float(augment_on_the_fly),
        "skipped_files": len(skipped),
        "optimizer": "Adam(beta1=0.9, beta2=0.999, eps=1e-8), no weight decay, no dropout",
    }
    model_id, size = write_model_dir(net, Path(out_dir), spec, training)
    return TrainReport(
        out_dir=Path(out_dir), model_id=model_id, val_accuracy=info["val_accuracy"],
        train_accuracy=info["train_accuracy"], best_epoch=info["best_epoch"], epochs_run=info["epochs_run"],
        num_train=info["num_train"], num_val=info["num_val"], identities=info["identities"], onnx_bytes=size,
        seconds=time.perf_counter() - t0, skipped=tuple(skipped), history=tuple(info["history"]),
    )
