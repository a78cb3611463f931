"""The one training loop: the paper's network (or a variant) on uint8 face crops, driven by a :class:`TrainConfig`.

Objectives (summed over the rows they apply to; each optional):

* identity loss on labelled rows: ``classifier`` = softmax cross-entropy through the network's own
  FC-K layer (paper Table I), or a separate ``softmax | arcface | cosface`` head on the 60-D feature;
  plus an optional cosine centre loss on the feature (``center_loss``, one learned centre per identity);
* distillation on rows with a ``teacher`` descriptor: the 60-D feature goes through a learned linear
  projection (training only) and regresses the (centred) descriptor by cosine (``distill_weight``),
  and the batch's pairwise-cosine matrix regresses the teacher's (``relation_weight``).

Adam; a constant, cosine or one-cycle learning rate; per-epoch validation on a seeded held-out
share (stratified by source image, or random rows) that keeps the best epoch's weights; early
stopping after ``patience`` epochs without improvement. Projections, heads and centres are
training-only: the returned network is the plain one that :func:`hybridface.training.export.export_onnx`
writes. The two presets :meth:`TrainConfig.paper` (``hybridface train``, the evaluation harness) and
:meth:`TrainConfig.general` (``hybridface train --teacher/--loss``, ``hybridface fit``) hold the recipes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, DatasetError
from hybridface.models.preprocess import PreprocessSpec, preprocess

__all__ = ["TrainConfig", "TrainResult", "train", "stratified_split", "SCHEDULES", "AUGMENTATIONS", "LOSSES"]

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine", "onecycle")
AUGMENTATIONS = ("none", "paper", "strong")
#: ``classifier``: the network's own FC-K layer; the others: a separate head (:mod:`hybridface.training.losses`)
LOSSES = ("classifier", "softmax", "arcface", "cosface")
SPLITS = ("stratified", "random")
EVAL_BATCH = 512


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, validated at construction (:class:`ConfigError`, one line).

    ``patience=None``: never stop early. ``val_split``: ``stratified`` holds out
    ``val_fraction`` of each identity's source images (``groups``); ``random`` holds out that share
    of the rows (none below 20 rows). ``augment``: ``paper`` replaces an image, with probability
    ``augment_p``, by one of the paper's 17 transformations; ``strong`` is
    :func:`hybridface.faces.augment.strong_augment` (the 17 with probability ``augment_p``, crop,
    colour jitter, flip). ``preprocessing`` holds the illumination and channels.
    """

    epochs: int = 100
    lr: float = 1e-4
    batch_size: int = 100
    seed: int = 0
    schedule: str = "constant"
    patience: int | None = 15
    val_fraction: float = 0.2
    val_split: str = "stratified"
    augment: str = "none"
    augment_p: float = 0.5
    loss: str | None = "classifier"
    center_loss: float = 0.0
    margin: float | None = None
    distill_weight: float = 1.0
    relation_weight: float = 0.0
    center_teacher: bool = True
    arch: str = "paper"
    batchnorm: bool = False
    preprocessing: PreprocessSpec = field(default_factory=PreprocessSpec)
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown lr schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or (self.patience is not None and self.patience < 1) \
                or not self.lr > 0:
            raise ConfigError(f"epochs, batch_size, patience must be >= 1 and lr > 0 "
                              f"(got {self.epochs}, {self.batch_size}, {self.patience}, {self.lr})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_split not in SPLITS:
            raise ConfigError(f"unknown val_split {self.val_split!r}; use one of {', '.join(SPLITS)}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {self.augment!r}; use one of {', '.join(AUGMENTATIONS)}")
        if not 0.0 <= self.augment_p <= 1.0:
            raise ConfigError(f"augmentation probability must be in [0, 1], got {self.augment_p}")
        if self.loss is not None and self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if not self.center_loss >= 0:
            raise ConfigError(f"center_loss must be >= 0, got {self.center_loss}")
        if self.margin is not None and self.loss not in ("arcface", "cosface"):
            raise ConfigError(f"a margin needs --loss arcface or cosface (got loss {self.loss})")
        top = 1.0 if self.loss == "cosface" else 1.5707963
        if self.margin is not None and not 0.0 <= self.margin < top:
            raise ConfigError(f"{self.loss} margin must be in [0, {top:g}), got {self.margin}")
        if not self.relation_weight >= 0:
            raise ConfigError(f"relation_weight must be >= 0 (got {self.relation_weight})")
        if not self.distill_weight >= 0:
            raise ConfigError(f"distill_weight must be >= 0 (got {self.distill_weight})")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def paper(cls, **changes: Any) -> TrainConfig:
        """The paper's recipe: classifier cross-entropy, Adam lr 1e-4 constant, batch 100, early stopping."""
        return cls(**changes)

    @classmethod
    def general(cls, **changes: Any) -> TrainConfig:
        """The general recipe: distillation and/or a head, one-cycle lr 2e-3, batch 128, strong augmentation."""
        base = dict(epochs=30, lr=2e-3, batch_size=128, schedule="onecycle", patience=None, val_fraction=0.05,
                    val_split="random", augment="strong", loss=None)
        return cls(**{**base, **changes})

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class TrainResult:
    """The trained network (best epoch's weights, eval mode, BatchNorm folded) and what happened."""

    net: Any = field(repr=False)
    config: TrainConfig
    identities: tuple[str, ...]
    best_epoch: int
    epochs_run: int
    num_train: int
    num_val: int
    teacher_rows: int
    labelled_rows: int
    feature_parameters: int
    seconds: float
    history: tuple[dict[str, float], ...] = field(repr=False)

    @property
    def best(self) -> dict[str, float]:
        """The history row of the kept epoch."""
        return self.history[self.best_epoch - 1]

    @property
    def val_accuracy(self) -> float | None:
        return self.best.get("val_acc") if self.num_val else None

    @property
    def train_accuracy(self) -> float | None:
        return self.best.get("train_acc")

    def summary(self) -> dict[str, Any]:
        """The run for a model card: architecture, objective, row counts, kept epoch, its validation scores."""
        return {"arch": self.config.arch, "loss": self.config.loss, "teacher_rows": self.teacher_rows,
                "labelled_rows": self.labelled_rows, "identities": len(self.identities),
                "batchnorm": self.config.batchnorm, "num_train": self.num_train, "num_val": self.num_val,
                "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                "feature_parameters": self.feature_parameters, "seconds": self.seconds,
                **{k: v for k, v in self.best.items() if k.startswith("val_")}}


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
    train_rows: list[int] = []
    val: list[int] = []
    for ident in sorted(by_id):
        keys = sorted(by_id[ident])
        rng.shuffle(keys)
        n_val = int(round(val_fraction * len(keys)))
        n_val = min(max(n_val, 1), len(keys) - 1) if val_fraction > 0 and len(keys) >= 2 else 0
        for j, g in enumerate(keys):
            (val if j < n_val else train_rows).extend(by_id[ident][g])
    return np.array(sorted(train_rows), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def _labels(config: TrainConfig, n: int, labels: Sequence[str | None] | None,
            has_t: np.ndarray) -> tuple[list[str], np.ndarray]:
    names = sorted({x for x in (labels or []) if x is not None})
    y = np.full(n, -1, np.int64)
    if labels is not None:
        if len(labels) != n:
            raise ConfigError(f"{len(labels)} labels for {n} images")
        index = {k: i for i, k in enumerate(names)}
        y = np.array([-1 if x is None else index[x] for x in labels], np.int64)
    if config.loss == "classifier":
        if len(names) < 2:
            raise DatasetError(f"training needs at least 2 identities, found {len(names)}: {names}")
        if (y < 0).any():
            raise ConfigError("the classifier loss needs a label on every image")
    elif config.loss is None and not has_t.any():
        raise DatasetError("nothing to train on: no teacher descriptors and no identity loss")
    elif config.loss is not None and len(names) < 2:
        raise DatasetError(f"--loss {config.loss} needs labelled images of at least 2 identities, found {len(names)}")
    return names, y


def _split(config: TrainConfig, n: int, labels: Sequence[str | None] | None, groups: Sequence[str] | None,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if config.val_split == "stratified":
        ids = [str(x) for x in labels] if labels is not None else [""] * n
        return stratified_split(ids, list(groups) if groups is not None else [f"#{i}" for i in range(n)],
                                config.val_fraction, config.seed)
    perm = rng.permutation(n)
    n_val = int(round(config.val_fraction * n)) if n >= 20 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _augmenter(config: TrainConfig):
    """``batch, rng -> batch`` for ``config.augment`` (None when off)."""
    if config.augment == "strong":
        from hybridface.faces.augment import strong_augment

        return lambda xb, rng: strong_augment(xb, rng, p_paper=config.augment_p)
    if config.augment == "paper" and config.augment_p > 0:
        from hybridface.faces.augment import NUM_VARIANTS, augment

        def paper(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            v = np.where(rng.random(len(xb)) < config.augment_p, rng.integers(1, NUM_VARIANTS, size=len(xb)), 0)
            return np.stack([augment(im, int(k), seed=int(rng.integers(1 << 30))) if k else im
                             for im, k in zip(xb, v)])

        return paper
    return None


def _scheduler(config: TrainConfig, opt, steps_per_epoch: int):
    import torch

    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs * steps_per_epoch))
    if config.schedule == "onecycle":
        steps = max(config.epochs * max(1, steps_per_epoch), 10)  # OneCycleLR divides by zero below ~10 steps
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps,
                                                   pct_start=max(0.1, 2.0 / steps))
    return None


def train(config: TrainConfig, images: np.ndarray, *, labels: Sequence[str | None] | None = None,
          groups: Sequence[str] | None = None, teacher: np.ndarray | None = None,
          init_state: dict[str, Any] | None = None) -> TrainResult:
    """Train on uint8 ``(n, S, S, 3)`` ``images`` as ``config`` says; return a :class:`TrainResult`.

    ``labels``: per row an identity or ``None`` (not in the identity loss); ``groups``: per row its
    source (augmented copies of one image stay on one side of a stratified split); ``teacher``:
    ``(n, e)`` descriptors, all-zero rows where a row has none; ``init_state``: a state dict of the
    same architecture to start from (warm start; the classifier layer is not loaded).
    """
    import torch

    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    try:
        return _train(config, images, labels, groups, teacher, init_state)
    finally:
        torch.set_num_threads(old_threads)


def _train(config, images, labels, groups, teacher, init_state) -> TrainResult:
    import torch
    from torch.nn import functional as F
    from tqdm import tqdm

    from hybridface.training.losses import cosine_distill_loss, make_head, relational_distill_loss
    from hybridface.training.variants import BatchNormTrainer, build_network, feature_parameters

    t0 = time.perf_counter()
    n, spec = len(images), config.preprocessing
    has_t = np.zeros(n, bool) if teacher is None else np.abs(np.asarray(teacher)).sum(1) > 0
    names, y = _labels(config, n, labels, has_t)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tr, va = _split(config, n, labels, groups, rng)
    net = build_network(config.arch, len(names) if config.loss == "classifier" else 1)
    if init_state is not None:
        net.load_state_dict({k: v for k, v in init_state.items() if not k.startswith("fc3")}, strict=False)
    if config.batchnorm:
        net = BatchNormTrainer(net)
    dim = net.fc2.out_features
    centres = torch.nn.Parameter(torch.randn(len(names), dim)) if config.center_loss > 0 else None
    proj = torch.nn.Linear(dim, int(np.shape(teacher)[1]) if teacher is not None else 128)
    margin = {} if config.margin is None else {"margin": config.margin}
    head = make_head(config.loss, dim, len(names), **margin) if config.loss not in (None, "classifier") else None
    params = list(net.parameters()) + ([centres] if centres is not None else []) + list(proj.parameters())
    params += list(head.parameters()) if head is not None else []
    opt = torch.optim.Adam(params, lr=config.lr)
    sched = _scheduler(config, opt, -(-len(tr) // config.batch_size))
    augment = _augmenter(config)
    t_all = None
    if teacher is not None:
        # dlib descriptors share a large common component (two strangers have cosine ~0.9), so the
        # targets are centred on the training mean and re-normalised: the cosine loss then measures
        # the identity-bearing part instead of rewarding the mean direction.
        t = np.asarray(teacher, np.float32).copy()
        if config.center_teacher and has_t.any():
            t[has_t] -= t[has_t].mean(0)
            t[has_t] /= np.maximum(np.linalg.norm(t[has_t], axis=1, keepdims=True), 1e-12)
        t_all = torch.from_numpy(t)
    y_all = torch.from_numpy(y)

    def logits(f):
        return net.fc3(f) if config.loss == "classifier" else head.logits(f)

    def evaluate() -> dict[str, float]:
        out: dict[str, float] = {}
        if not len(va):
            return out
        net.eval()
        with torch.inference_mode():
            f = torch.cat([net.features(torch.from_numpy(preprocess(images[va[i:i + EVAL_BATCH]], spec)))
                           for i in range(0, len(va), EVAL_BATCH)])
            idx = torch.from_numpy(va)
            m = torch.from_numpy(has_t[va])
            if m.any():
                out["val_teacher_cos"] = float(F.cosine_similarity(proj(f[m]), t_all[idx][m], dim=1).mean())
            lab = y_all[idx] >= 0
            if config.loss is not None and lab.any():
                out["val_acc"] = float((logits(f[lab]).argmax(1) == y_all[idx][lab]).float().mean())
        return out

    best: tuple[float, int, Any] = (-np.inf, 0, None)
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch", disable=not config.progress, leave=False)
    for epoch in bar:
        net.train()
        order = rng.permutation(tr)
        tot, count, correct = 0.0, 0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            xb = augment(images[idx], rng) if augment is not None else images[idx]
            f = net.features(torch.from_numpy(preprocess(xb, spec)))
            ti = torch.from_numpy(idx)
            terms = []
            m = torch.from_numpy(has_t[idx])
            if m.any():
                terms.append(config.distill_weight * cosine_distill_loss(proj(f[m]), t_all[ti][m]))
                if config.relation_weight > 0 and int(m.sum()) > 1:
                    terms.append(config.relation_weight * relational_distill_loss(f[m], t_all[ti][m]))
            yb = y_all[ti]
            if config.loss == "classifier":
                z = net.fc3(f)
                terms.append(F.cross_entropy(z, yb))
                correct += int((z.argmax(1) == yb).sum())
                if centres is not None:
                    diff = F.normalize(f, dim=1) - F.normalize(centres, dim=1)[yb]
                    terms.append(float(config.center_loss) * diff.pow(2).sum(1).mean())
            elif head is not None and (yb >= 0).any():
                lab = yb >= 0
                terms.append(head(f[lab], yb[lab]))
            if not terms:
                continue
            loss_v = sum(terms)
            opt.zero_grad(set_to_none=True)
            loss_v.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot += float(loss_v.detach()) * len(idx)
            count += len(idx)
        row: dict[str, float] = {"epoch": epoch, "loss": tot / max(count, 1)}
        if config.loss == "classifier":
            row["train_acc"] = correct / max(len(tr), 1)
        row.update(evaluate())
        row["lr"] = float(opt.param_groups[0]["lr"])
        history.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k not in ("epoch", "lr")})
        log.info("epoch %d %s", epoch, {k: round(v, 4) for k, v in row.items() if k != "epoch"})
        score = row.get("val_teacher_cos", row.get("val_acc", row.get("train_acc", float(epoch))))
        if score >= best[0]:  # ties: the later epoch (further down the lr schedule)
            best = (score, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
        elif config.patience is not None and epoch - best[1] >= config.patience:
            log.info("early stop at epoch %d (best %.4f at epoch %d)", epoch, best[0], best[1])
            break
    bar.close()
    net.load_state_dict(best[2])
    net.eval()
    if config.batchnorm:
        net = net.fold()
    return TrainResult(net=net, config=config, identities=tuple(names), best_epoch=best[1], epochs_run=len(history),
                       num_train=int(len(tr)), num_val=int(len(va)), teacher_rows=int(has_t.sum()),
                       labelled_rows=int((y >= 0).sum()), feature_parameters=feature_parameters(net),
                       seconds=round(time.perf_counter() - t0, 1), history=tuple(history))
