"""Training objectives on the 60-D feature: softmax, ArcFace, CosFace heads and the distillation loss.

* ``softmax`` — a linear classifier over the training identities + cross-entropy (the paper).
* ``arcface`` — additive angular margin (Deng et al., CVPR 2019): logits ``s·cos(θ_y + m)`` for the
  true class and ``s·cos θ_j`` otherwise, features and class weights L2-normalised
  (``s = 30``, ``m = 0.5``; where ``θ + m > π`` the monotonic fallback ``cos θ − m·sin m`` is used).
* ``cosface`` — additive cosine margin (Wang et al., CVPR 2018): ``s·(cos θ_y − m)``, ``m = 0.35``.
* :func:`cosine_distill_loss` — ``1 − cos(student projection, teacher descriptor)``, averaged.
* :func:`relational_distill_loss` — mean squared difference between the batch's pairwise cosine
  matrices of the student's own 60-D feature and of the teacher descriptors (relational KD, Park
  et al., CVPR 2019): it shapes the geometry that search actually uses, not a projection of it.

Heads are training-only modules: they are never exported (the ONNX graph ends at the feature).
Only training imports this module (it needs torch).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from hybridface.errors import ConfigError

__all__ = ["LOSSES", "MarginHead", "SoftmaxHead", "make_head", "cosine_distill_loss", "relational_distill_loss"]

LOSSES = ("softmax", "arcface", "cosface")


class SoftmaxHead(nn.Module):
    """Linear classifier + cross-entropy."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def logits(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(features)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(features), labels)


class MarginHead(nn.Module):
    """ArcFace (``kind="arcface"``) or CosFace (``kind="cosface"``) head; ``forward`` gives the loss."""

    def __init__(self, in_features: int, num_classes: int, *, kind: str = "arcface", scale: float = 30.0,
                 margin: float | None = None) -> None:
        super().__init__()
        if kind not in ("arcface", "cosface"):
            raise ConfigError(f"margin head kind {kind!r}: use arcface or cosface")
        m = (0.5 if kind == "arcface" else 0.35) if margin is None else float(margin)
        if not 0.0 <= m < (math.pi / 2 if kind == "arcface" else 1.0) or not scale > 0:
            raise ConfigError(f"invalid {kind} margin {m} / scale {scale}")
        self.kind, self.scale, self.margin = kind, float(scale), m
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self._cos_m, self._sin_m = math.cos(m), math.sin(m)
        self._th, self._mm = math.cos(math.pi - m), math.sin(math.pi - m) * m

    def cosines(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)

    def logits(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits; with ``labels`` the margin is applied to each row's true class."""
        cos = self.cosines(features)
        if labels is None:
            return self.scale * cos
        true = cos.gather(1, labels[:, None])
        if self.kind == "cosface":
            target = true - self.margin
        else:
            sin = torch.sqrt((1.0 - true * true).clamp(min=1e-7))
            phi = true * self._cos_m - sin * self._sin_m
            target = torch.where(true > self._th, phi, true - self._mm)
        return self.scale * cos.scatter(1, labels[:, None], target)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(features, labels), labels)


def make_head(loss: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """The training head for ``loss`` (one of :data:`LOSSES`)."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    if num_classes < 2:
        raise ConfigError(f"a {loss} head needs at least 2 identities, got {num_classes}")
    if loss == "softmax":
        return SoftmaxHead(in_features, num_classes)
    return MarginHead(in_features, num_classes, kind=loss, **kwargs)


def cosine_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean ``1 − cos`` between rows of ``student`` (projected, ``(n, 128)``) and ``teacher``."""
    if student.shape != teacher.shape:
        raise ConfigError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ")
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


def relational_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean ``(cos_s(i, j) − cos_t(i, j))²`` over all pairs of rows (``student`` ``(n, d)``, ``teacher`` ``(n, e)``)."""
    if student.shape[0] != teacher.shape[0]:
        raise ConfigError(f"student has {student.shape[0]} rows, teacher {teacher.shape[0]}")
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher, dim=1)
    return (s @ s.T - t @ t.T).pow(2).mean()


def hint_loss(student: list[torch.Tensor], teacher: list[torch.Tensor],
              channels: list[torch.Tensor] | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Feature-matching ("hint") loss over stages: per stage, the MSE between the student's
    feature map and the teacher's on the student's kept channels (``channels[i]``: indices into
    the teacher's channels; ``None``: all), each channel divided by the teacher's variance of
    that channel over the batch and positions; the mean over stages. Maps must agree in
    batch and spatial size."""
    if len(student) != len(teacher) or not student:
        raise ValueError(f"hint_loss needs one teacher map per student map, got {len(student)} and {len(teacher)}")
    total = student[0].new_zeros(())
    for i, (s, t) in enumerate(zip(student, teacher)):
        t = t.detach()
        if channels is not None and channels[i] is not None:
            t = t[:, channels[i]]
        if s.shape != t.shape:
            raise ValueError(f"hint_loss stage {i}: student map {tuple(s.shape)} vs teacher {tuple(t.shape)}")
        var = t.var(dim=(0, 2, 3), unbiased=False) + eps
        total = total + (((s - t) ** 2).mean(dim=(0, 2, 3)) / var).mean()
    return total / len(student)
