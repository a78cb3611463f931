"""Enrolment spread over a Ray cluster: detect + encode in Ray tasks, one writer process.

Each identity of ``<folder>/<identity>/<images>`` is one Ray task that crops and encodes its images
with the same functions local enrolment uses (:func:`hybridface.prepare.prepare_images`,
:func:`hybridface.prepare.encode_crops`) on whichever node runs it; the image paths must be
readable there (a shared or replicated folder; on the loopback cluster they are). The calling
process alone writes to the gallery, one transaction per identity, in the same (sorted) identity
order as local enrolment, so template ids and contents are identical to ``Gallery.enroll_folder``.

A task whose worker dies (killed process, lost node) is re-run by Ray (``max_retries``); since
nothing is written until a task's result reaches the writer, and each identity is written once,
no template is lost or duplicated.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hybridface.errors import EngineError
from hybridface.results import EnrollReport

log = logging.getLogger(__name__)

#: Ray re-runs a task this many times when its worker dies
MAX_RETRIES = 5
#: the most identity tasks in flight at once (bounds the results held by the writer)
IN_FLIGHT = 64

_ENCODERS: dict[Any, Any] = {}


def encode_identity(model: str | None, identity: str, paths: list[str], detect: str, detector: str,
                    crash_marker: str | None = None, keep_faces: bool = False) -> dict:
    """Crop and encode one identity's images (runs in a Ray task): templates, hashes, sources, skips.

    ``crash_marker`` (fault injection for tests): when that file does not exist yet, create it and
    kill this worker process, so Ray has to re-run the task elsewhere or again.
    """
    if crash_marker is not None and not os.path.exists(crash_marker):
        Path(crash_marker).touch()
        os._exit(1)
    from hybridface.prepare import crop_size, encode_crops, prepare_images

    if model not in _ENCODERS:
        _ENCODERS[model] = _load_encoder(model)
    encoder = _ENCODERS[model]
    prepared = prepare_images(paths, detect=detect, detector=detector, sources=paths, size=crop_size(encoder))
    good = [p for p in prepared if p.crop is not None]
    vectors = encode_crops(encoder, [p.crop for p in good]) if good else None
    faces = None
    if keep_faces and good:
        from hybridface.gallery.faces import encode_face

        faces = [encode_face(p.crop) for p in good]
    return {
        "identity": identity,
        "vectors": vectors,
        "hashes": [p.hash for p in good],
        "sources": [p.source for p in good],
        "skipped": tuple((p.source, str(p.error)) for p in prepared if p.crop is None),
        "faces": faces,
        "model_id": encoder.model_id,
        "node": os.uname().nodename,
    }


def connect_cluster(address: str | None) -> None:
    """Join the Ray cluster at ``address`` now (`EngineError`, one line, when it does not answer)."""
    from hybridface.engines.ray import connect

    connect(address)


def enroll_folder_ray(gallery, folder: str | os.PathLike, *, model: str | os.PathLike | None = None,
                      address: str | None = None, detect: str, detector: str, codewords: int | str | None = None,
                      crash_marker: str | None = None, keep_faces: bool = False) -> list[EnrollReport]:
    """Enrol ``folder/<identity>/<images>`` into ``gallery`` (a `hybridface.api.Gallery`) with the
    cropping and encoding in Ray tasks on the cluster at ``address`` (``None``: a local Ray).

    An address that does not answer is an `EngineError` (one line) before anything is read.
    ``keep_faces``: also store each face crop (made where the image is) for ``hybridface fit``.
    Returns one `EnrollReport` per identity, as ``Gallery.enroll_folder`` does.
    """
    from hybridface.protocols.dataset import scan_dataset

    ray = _ray()
    connect_cluster(address)
    scan = scan_dataset(folder, check="none")
    people = [(name, [str(p) for p in paths]) for name, paths in sorted(scan.identities.items()) if paths]
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(encode_identity)
    spec = None if model is None else str(model)
    pending: dict[Any, int] = {}
    done: dict[int, dict] = {}
    reports: list[EnrollReport] = []
    nxt = 0  # next identity to submit
    write = 0  # next identity to write (in order)
    while write < len(people):
        while nxt < len(people) and len(pending) < IN_FLIGHT:
            name, paths = people[nxt]
            marker = crash_marker if nxt == 0 else None
            pending[task.remote(spec, name, paths, detect, detector, marker, keep_faces)] = nxt
            nxt += 1
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i = pending.pop(ref)
            try:
                done[i] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures in many types
                raise EngineError(f"enrolment of {people[i][0]!r} failed on the Ray cluster after "
                                  f"{MAX_RETRIES} retries: {type(exc).__name__}: {exc}") from exc
        while write in done:  # one transaction per identity, in local enrolment's order
            reports.append(_write(gallery, done.pop(write), codewords))
            write += 1
    return reports


def _write(gallery, r: dict, codewords: int | str | None) -> EnrollReport:
    if r["vectors"] is None:
        return EnrollReport(r["identity"], skipped=r["skipped"])
    gallery.store.check_model(r["model_id"], int(r["vectors"].shape[1]))
    res = gallery.store.add_templates(r["identity"], r["vectors"], r["hashes"], model_id=r["model_id"],
                                      sources=r["sources"], codewords=codewords, faces=r.get("faces"))
    return EnrollReport(res.identity, res.template_ids, res.duplicates, r["skipped"])


def _load_encoder(model: str | None):
    """The encoder ``hybridface.api.load_encoder(model)`` gives (same resolution, no import cycle)."""
    from hybridface.models.encoders import load_model
    from hybridface.models.zoo import MODEL_NAMES, load_encoder
    from hybridface.options import DEFAULTS

    model = DEFAULTS.model if model is None else model
    if model is None:  # the default encoder (dlib's ResNet, else general), as local enrolment
        from hybridface.models.default import default_encoder

        return default_encoder()
    return load_encoder(model) if isinstance(model, str) and model in MODEL_NAMES else load_model(model)


def _ray():
    from hybridface.errors import require

    return require("ray", "ray")
