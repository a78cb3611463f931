"""The evaluation's view of a protocol split: enrolled gallery, genuine probes, impostor probes.

Closed set (the paper): gallery = protocol gallery + distractors, probes = protocol probes.
Open set (``--open-set``): a seeded fraction of the identities is held out — their gallery
images are not enrolled (nor trained on) and their probes become impostors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError


@dataclass(frozen=True)
class EvalSplit:
    protocol: str
    gallery: tuple
    probes: tuple
    impostors: tuple
    detect: str
    held_out: tuple[str, ...]
    summary: str
    key: str  # content hash of the split (names, files, variants) for caching trained models


def _spread(samples: list, n: int | None) -> list:
    """At most ``n`` samples, evenly spaced (keeps every identity and variant represented)."""
    if n is None or len(samples) <= n:
        return samples
    return [samples[i] for i in np.linspace(0, len(samples) - 1, n).round().astype(int)]


def make_eval_split(cfg) -> EvalSplit:
    """Build the split for an `EvalConfig` (protocol, seed, options, open set, probe limit)."""
    from hybridface.protocols import get_protocol

    split = get_protocol(cfg.protocol, cfg.data_dir, seed=cfg.seed, **dict(cfg.protocol_options))
    gallery = list(split.gallery) + list(split.distractors)
    probes = list(split.probes)
    held: tuple[str, ...] = ()
    impostors: list = []
    if cfg.open_set:
        ids = sorted({s.identity for s in split.probes})
        n_out = max(1, int(round(cfg.impostor_fraction * len(ids))))
        if len(ids) - n_out < 2:
            raise ConfigError(
                f"--open-set holds out {n_out} of {len(ids)} probed identities; at least 2 must stay enrolled "
                "(lower --impostor-fraction or use a larger dataset)")
        rng = np.random.default_rng(cfg.seed)
        held = tuple(sorted(rng.choice(ids, size=n_out, replace=False).tolist()))
        gallery = [s for s in gallery if s.identity not in held]
        impostors = [s for s in probes if s.identity in held]
        probes = [s for s in probes if s.identity not in held]
    probes = _spread(probes, cfg.limit_probes)
    impostors = _spread(impostors, cfg.limit_probes)
    blob = json.dumps(
        [cfg.protocol, cfg.seed, sorted((k, str(v)) for k, v in dict(cfg.protocol_options).items()), held,
         [(str(s.path), s.identity, s.variant, s.seed) for s in gallery]],
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    summary = split.summary()
    if cfg.open_set:
        summary += (f"; open set: {len(held)} identities held out as impostors ({', '.join(held)}), "
                    f"{len(impostors)} impostor probes")
    if cfg.limit_probes is not None:
        summary += f"; probes limited to {len(probes)} (evenly spaced)"
    return EvalSplit(protocol=cfg.protocol, gallery=tuple(gallery), probes=tuple(probes), impostors=tuple(impostors),
                     detect=split.detect, held_out=held, summary=summary, key=key)


def materialise(samples, crops: dict) -> np.ndarray:
    """uint8 batch of the samples' crops, each passed through its augmentation variant."""
    from hybridface.faces.augment import augment

    out = [augment(crops[str(s.path)], s.variant, seed=s.seed) if s.variant else crops[str(s.path)] for s in samples]
    return np.ascontiguousarray(np.stack(out))
