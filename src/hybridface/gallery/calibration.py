"""Open-set threshold calibration from genuine / impostor pair distances of a labelled set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError


def threshold_at_far(impostor_distances: np.ndarray, far: float) -> float:
    """Largest distance threshold ``t`` (accept when ``d <= t``) whose false-accept rate over
    ``impostor_distances`` is at most ``far``. ``-inf`` (reject all) when even one accepted impostor
    would exceed ``far``."""
    d = np.sort(np.asarray(impostor_distances, dtype=np.float64).reshape(-1))
    if d.size == 0:
        raise ConfigError("no impostor scores: an open-set evaluation needs held-out identities")
    if not 0 <= far < 1:
        raise ConfigError(f"far must be in [0, 1), got {far}")
    allowed = int(np.floor(far * d.size + 1e-9))  # impostors that may be accepted
    if allowed >= d.size:
        return float(d[-1])
    # just below the (allowed + 1)-th smallest impostor distance (ties stay rejected)
    return float(np.nextafter(d[allowed], -np.inf))


@dataclass(frozen=True)
class Calibration:
    """Threshold with false-accept rate <= ``target_far`` over all impostor pairs of a labelled set."""

    threshold: float
    target_far: float
    far: float
    frr: float
    genuine_pairs: int
    impostor_pairs: int


def pair_distances(vectors: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of all pairs ``i < j``: (genuine = same label, impostor = different labels)."""
    v = np.asarray(vectors, dtype=np.float32)
    lab = np.asarray([str(x) for x in labels])
    if v.ndim != 2 or len(lab) != len(v):
        raise ConfigError(f"need one label per vector, got {len(lab)} labels for shape {v.shape}")
    d = 1.0 - v @ v.T
    iu = np.triu_indices(len(v), k=1)
    same = (lab[:, None] == lab[None, :])[iu]
    dist = np.maximum(d[iu], 0.0).astype(np.float64)
    return dist[same], dist[~same]


def calibrate_threshold(vectors: np.ndarray, labels: Sequence[str], *, target_far: float = 0.01,
                        max_samples: int = 3000, seed: int = 0) -> Calibration:
    """Estimate the open-set threshold from unit template ``vectors`` with identity ``labels``.

    At most ``max_samples`` vectors are used (a seeded random subset) so the pair matrix stays small.
    """
    if not 0 < float(target_far) < 1:
        raise ConfigError(f"target FAR must be between 0 and 1, got {target_far}")
    v = np.asarray(vectors, dtype=np.float32)
    labels = [str(x) for x in labels]
    if len(v) > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(len(v), max_samples, replace=False))
        v, labels = v[idx], [labels[i] for i in idx]
    if len(set(labels)) < 2:
        raise ConfigError("calibration needs images of at least 2 identities (impostor pairs)")
    genuine, impostor = pair_distances(v, labels)
    if genuine.size == 0:
        raise ConfigError("calibration needs at least 2 images of some identity (genuine pairs)")
    t = max(0.0, threshold_at_far(impostor, float(target_far)))
    return Calibration(
        threshold=float(t),
        target_far=float(target_far),
        far=float((impostor <= t).mean()),
        frr=float((genuine > t).mean()),
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
    )
