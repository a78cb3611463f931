"""Evaluation protocols: deterministic gallery/probe splits of the shared datasets.

``get_protocol(name, data_dir, seed=0, **options) -> Split`` with names

* ``yale-augmented`` — first 15 subjects of Extended Yale B (sorted), per subject a seeded
  2/3 : 1/3 split of its images into gallery/probes, each image in all 18 augmentation variants;
  ``detect="never"``. Options: ``subjects=15``, ``gallery_fraction=2/3``, ``variants=18``.
* ``vidtimit`` — per identity, frames in recording (numeric file name) order; first 60 %
  gallery, last 40 % probes; identities with < 10 frames are distractors only;
  ``detect="largest"``. Options: ``gallery_fraction=0.6``, ``min_frames=10``.
* ``vidtimit-paper`` — the paper's split (Table II): per identity a seeded random
  1,700 : 672 (71.7 %) split into gallery/probes; identities with < 10 frames are distractors
  only; ``detect="largest"``. Options: ``gallery_fraction=1700/2372``, ``min_frames=10``.
  ``vidtimit`` (temporal) is harder: its probes are later frames, not neighbours of gallery ones.
* ``folder`` — any ``<identity>/<image>`` folder; per identity a seeded shuffle, the first
  ``gallery_per_identity`` (default: half, at least 1) to the gallery, the rest probes;
  identities with one image are distractors. Options: ``gallery_per_identity``, ``detect="largest"``.
* ``unseen`` — leave-one-dataset-out over a datasets root: test identities of ``holdout``
  (``att_orl`` | ``vidtimit14`` | ``extended_yale_b``) never seen in training; seeded first
  ``gallery_per_identity`` (5) images per identity to the gallery, the rest probes; the training
  side (other datasets) is ``split.train`` (see :mod:`hybridface.protocols.unseen`).
"""

from __future__ import annotations

from pathlib import Path

from hybridface.errors import ConfigError
from hybridface.protocols.base import Sample, Split, sample_seed

__all__ = ["Sample", "Split", "get_protocol", "PROTOCOLS", "sample_seed"]

#: protocol name -> "module:function"
PROTOCOLS: dict[str, str] = {
    "yale-augmented": "hybridface.protocols.yale:yale_augmented",
    "vidtimit": "hybridface.protocols.vidtimit:vidtimit",
    "vidtimit-paper": "hybridface.protocols.vidtimit_paper:vidtimit_paper",
    "folder": "hybridface.protocols.folder:folder",
    "unseen": "hybridface.protocols.unseen:unseen",
}


def get_protocol(name: str, data_dir: str | Path, *, seed: int = 0, **options) -> Split:
    """Build the split ``name`` over ``data_dir`` (the dataset folder, or its parent holding
    ``extended_yale_b`` / ``vidtimit14``)."""
    import importlib

    target = PROTOCOLS.get(name)
    if target is None:
        raise ConfigError(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOLS)}")
    import inspect

    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    known = [k for k in inspect.signature(fn).parameters if k not in ("data_dir", "seed")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"protocol {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options are {', '.join(known) or '(none)'}")
    return fn(Path(data_dir), seed=int(seed), **options)
