"""The main job: enrol a protocol's gallery side into a fresh gallery, identify its probe side.

``run_protocol("vidtimit", datasets_dir, db=...)`` crops every image with the protocol's detect
policy, encodes with the (shipped) model, enrols per identity (one transaction each), identifies
all probes with one strategy, and reports Rank-1 and time per probe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hybridface.api import Gallery, load_encoder, open_gallery
from hybridface.errors import ConfigError, GalleryError
from hybridface.gallery.store import GalleryStore
from hybridface.options import DEFAULTS, SearchOptions
from hybridface.prepare import crop_size, encode_crops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProtocolRun:
    """Outcome of :func:`run_protocol` (times in seconds)."""

    protocol: str
    summary: str
    strategy: str
    identities: int
    templates: int
    probes: int
    skipped: tuple[tuple[str, str], ...]
    rank1: float
    enrol_seconds: float
    probe_prepare_seconds: float
    search_seconds: float

    @property
    def ms_per_probe(self) -> float:
        """Crop + encode + search, per probe."""
        return 1000 * (self.probe_prepare_seconds + self.search_seconds) / max(self.probes, 1)

    @property
    def search_ms_per_probe(self) -> float:
        return 1000 * self.search_seconds / max(self.probes, 1)


def _crop_samples(samples, detect: str, *, size: int, progress: bool):
    """Crops (augmented per sample variant) of the samples, plus the skipped ``(path, reason)``."""
    from hybridface.faces.crop import load_crops

    outcomes = load_crops([s.path for s in samples], detect=detect, size=size, progress=progress)
    kept, crops, skipped = [], [], []
    for s, o in zip(samples, outcomes):
        if o.crop is None:
            skipped.append((str(s.path), str(o.error or "no face")))
            continue
        img = o.crop.image
        if s.variant:
            from hybridface.faces.augment import augment

            img = augment(img, s.variant, seed=s.seed)
        kept.append(s)
        crops.append(img)
    return kept, crops, skipped


def run_protocol(name: str, data_dir: str | os.PathLike, *, db: str | os.PathLike,
                 model: str | os.PathLike | None = DEFAULTS.model, search: SearchOptions | None = None,
                 codewords: int | str = DEFAULTS.codewords, seed: int = 0, overwrite: bool = False,
                 progress: bool = False, keep_faces: bool = True, **options) -> ProtocolRun:
    """Run protocol ``name`` end to end into a *fresh* gallery file ``db``.

    ``search``: how the probes are searched (`SearchOptions`, validated before any image is read;
    default :data:`~hybridface.options.DEFAULTS`). ``keep_faces``: keep the gallery's face crops
    (for ``hybridface fit``). Extra ``options`` go to the protocol.

    An existing ``db`` is refused (`GalleryError`) unless ``overwrite`` is set *and* it is a
    hybridface gallery; then it is replaced.
    """
    from hybridface.protocols import get_protocol
    search = search if search is not None else SearchOptions()
    if not isinstance(search, SearchOptions):
        raise ConfigError(f"search must be a SearchOptions, got {type(search).__name__}")
    split = get_protocol(name, Path(data_dir), seed=seed, **options)
    log.info("%s", split.summary())
    db = Path(db)
    if db.exists():
        if not overwrite:
            raise GalleryError(f"{db} already exists; choose a new --db path or pass --overwrite to replace it")
        GalleryStore(db, readonly=True).close()  # refuses (GalleryError) anything that is not a gallery
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    encoder = load_encoder(model)  # before the gallery file is created: a missing model leaves nothing behind
    gallery: Gallery = open_gallery(db, encoder=encoder, create=True)
    try:
        t0 = time.perf_counter()
        kept, crops, skipped = _crop_samples((*split.gallery, *split.distractors), split.detect,
                                             size=crop_size(encoder), progress=progress)
        vecs = encode_crops(encoder, crops)
        by_id: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(kept):
            by_id[s.identity].append(i)
        for ident, rows in by_id.items():
            hashes = [hashlib.sha256(f"{kept[i].path.name}/{kept[i].variant}".encode()).hexdigest() for i in rows]
            gallery.enroll_vectors(ident, vecs[rows], model_id=encoder.model_id, codewords=codewords,
                                   sources=[str(kept[i].path) for i in rows], hashes=hashes,
                                   faces=[crops[i] for i in rows] if keep_faces else None)
        enrol_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        pkept, pcrops, pskipped = _crop_samples(split.probes, split.detect, size=crop_size(encoder), progress=progress)
        pvecs = encode_crops(encoder, pcrops)
        prep_s = time.perf_counter() - t0
        gallery.searcher(search)  # build outside the timed part
        t0 = time.perf_counter()
        answers = gallery.identify_vectors(pvecs, probes=[str(s.path) for s in pkept], options=search)
        search_s = time.perf_counter() - t0
        # Probes without a usable face count as misses.
        n_probes = len(split.probes)
        hits = sum(a.identity == s.identity for a, s in zip(answers, pkept))
        m = gallery.matrix()
        return ProtocolRun(
            protocol=name, summary=split.summary(), strategy=search.strategy, identities=m.num_identities,
            templates=m.num_templates, probes=n_probes, skipped=tuple(skipped + pskipped),
            rank1=hits / max(n_probes, 1), enrol_seconds=enrol_s, probe_prepare_seconds=prep_s,
            search_seconds=search_s,
        )
    finally:
        gallery.close()


__all__ = ["ProtocolRun", "run_protocol"]
