"""``unseen``: leave-one-dataset-out identification on identities never seen in training.

``data_dir`` is a datasets root holding ImageFolder datasets (by default the three of the paper:
``att_orl``, ``extended_yale_b``, ``vidtimit14``). One of them, ``holdout`` (the *rotation*), is
the test set: per identity a seeded shuffle of its images, the first ``gallery_per_identity`` to
the gallery, the rest probes (an identity with no image left for probing is a distractor). The
other datasets are the training side: all their images, exposed as :attr:`UnseenSplit.train`
(and, with each dataset's detection policy, by :meth:`UnseenSplit.training_sources`). Every
identity is prefixed with its dataset (``att_orl/s1``), so train and test identities are
disjoint by construction, and the test dataset's files are never on the training side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridface.errors import ConfigError, DatasetError
from hybridface.protocols.base import Sample, Split, sample_seed
from hybridface.protocols.dataset import scan_dataset

__all__ = ["unseen", "unseen_training_sources", "UnseenSplit", "ROTATIONS", "DATASET_DETECT"]

#: the datasets that rotate through the test side by default
ROTATIONS: tuple[str, ...] = ("att_orl", "vidtimit14", "extended_yale_b")
#: face-crop policy per dataset (pre-cropped faces vs full video frames); others: ``largest``
DATASET_DETECT: dict[str, str] = {"att_orl": "never", "extended_yale_b": "never", "vidtimit14": "largest"}


@dataclass(frozen=True)
class UnseenSplit(Split):
    """A :class:`Split` over the held-out dataset plus the training side of the other datasets."""

    train: tuple[Sample, ...] = ()
    holdout: str = ""
    train_datasets: tuple[str, ...] = ()

    def training_sources(self) -> list[tuple[list[Sample], str, str]]:
        """``[(samples, detect, ""), ...]`` per training dataset, as
        :func:`hybridface.training.train.train_sources` takes them (identities are already
        prefixed with their dataset, so the prefix slot is empty)."""
        out = []
        for name in self.train_datasets:
            samples = [s for s in self.train if s.identity.split("/", 1)[0] == name]
            out.append((samples, DATASET_DETECT.get(name, "largest"), ""))
        return out

    def summary(self) -> str:
        ids = len({s.identity for s in self.train})
        return (f"{super().summary()}; held out {self.holdout}; training side: "
                f"{', '.join(self.train_datasets)} ({len(self.train)} images, {ids} ids)")


def _seeded_first(files: tuple[Path, ...], k: int, seed: int, name: str) -> tuple[list[int], list[int]]:
    from hybridface.protocols.yale import _seeded_order

    order = [int(i) for i in _seeded_order(len(files), seed, name)]
    return sorted(order[:k]), sorted(order[k:])


def unseen(data_dir: Path, *, seed: int = 0, holdout: str = "att_orl", datasets: str | tuple[str, ...] | None = None,
           gallery_per_identity: int = 5, check: str = "none") -> UnseenSplit:
    """Hold out dataset ``holdout``; train side = the other ``datasets`` (comma list or tuple;
    default: those of :data:`ROTATIONS` present under ``data_dir``)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: datasets root not found; expected folders like {', '.join(ROTATIONS)}")
    if isinstance(datasets, str):
        datasets = tuple(d.strip() for d in datasets.split(",") if d.strip())
    names = tuple(datasets) if datasets else tuple(d for d in ROTATIONS if (root / d).is_dir())
    if holdout not in names:
        raise ConfigError(f"holdout={holdout!r} is not among the datasets {', '.join(names) or '(none)'} "
                          f"under {root}; use one of them")
    if int(gallery_per_identity) < 1:
        raise ConfigError(f"gallery_per_identity={gallery_per_identity!r} must be at least 1")
    k = int(gallery_per_identity)
    missing = [d for d in names if not (root / d).is_dir()]
    if missing:
        raise DatasetError(f"{root}: dataset folder(s) {', '.join(missing)} not found")
    train_names = tuple(d for d in names if d != holdout)
    if not train_names:
        raise ConfigError("unseen needs at least two datasets (one held out, one or more to train on)")
    gallery: list[Sample] = []
    probes: list[Sample] = []
    distractors: list[Sample] = []
    scan = scan_dataset(root / holdout, check=check)
    for ident in sorted(scan.identities):
        files = scan.identities[ident]
        if not files:
            continue
        name = f"{holdout}/{ident}"
        g_idx, p_idx = _seeded_first(files, k, seed, name)
        side = gallery if p_idx else distractors
        side.extend(Sample(path=files[i], identity=name, seed=sample_seed(seed, name, files[i])) for i in g_idx)
        probes.extend(Sample(path=files[i], identity=name, seed=sample_seed(seed, name, files[i])) for i in p_idx)
    if not gallery or not probes:
        raise DatasetError(f"{root / holdout}: no identity has more than {k} images; lower gallery_per_identity")
    train: list[Sample] = []
    for d in train_names:
        tscan = scan_dataset(root / d, check=check)
        for ident in sorted(tscan.identities):
            name = f"{d}/{ident}"
            train.extend(Sample(path=f, identity=name, seed=sample_seed(seed, name, f)) for f in tscan.identities[ident])
    return UnseenSplit(
        name=f"unseen-{holdout}", gallery=tuple(gallery), probes=tuple(probes), distractors=tuple(distractors),
        detect=DATASET_DETECT.get(holdout, "largest"), seed=int(seed), train=tuple(train), holdout=holdout,
        train_datasets=train_names,
    )


def unseen_training_sources(data_dir: str | Path, *, holdout: str, seed: int = 0,
                            **options) -> list[tuple[list[Sample], str, str]]:
    """The training side of ``unseen(data_dir, holdout=...)`` as ``[(samples, detect, "")]``."""
    return unseen(Path(data_dir), seed=seed, holdout=holdout, **options).training_sources()
