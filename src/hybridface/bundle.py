"""Device bundles: one folder with a gallery's ONNX model and its templates, run with core deps only.

``write_bundle(g2, out_dir)`` (``hybridface export G2 --bundle DIR``) writes::

    DIR/bundle.json        manifest: format, model id, identities, templates, threshold, source
    DIR/model.onnx|.json   the gallery's fp32 model (+ model.int8.onnx|.json when the fit made one)
    DIR/gallery.npz        templates (n, d) float32, labels (n,) int32, names, LBG codewords
    DIR/gallery.int8.npz   the same templates as per-dimension int8 codes (n, d) + scale (d,)
                           (:func:`hybridface.search.int8.quantize_int8`; about a quarter of the bytes)

``identify_bundle(DIR, images)`` (``hybridface identify --bundle DIR``) needs only numpy, ONNX
Runtime and OpenCV: no torch, no dlib, no SQLite gallery, no Pillow (images are decoded with
OpenCV when Pillow is absent). Search is the same `make_searcher` code as a gallery's.
``precision="int8"`` (``identify --bundle DIR --storage int8``) encodes with the int8 model when
the bundle has one and searches the int8 templates (decoded to float32 once at load); when the
float32 templates are in the bundle too, each probe's candidate identities (``max(k, top_n)`` of
them) are then re-scored exactly against them, so the answers are the float32 distances.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.cache import replace_dir
from hybridface.errors import ConfigError, ModelFileError

__all__ = ["BUNDLE_FORMAT", "Bundle", "load_bundle", "write_bundle", "identify_bundle"]

BUNDLE_FORMAT = "hybridface-bundle/1"
MANIFEST = "bundle.json"
#: The issue's size budget of a device bundle: 1 MB + 256 B per template.
BUDGET_BASE, BUDGET_PER_TEMPLATE = 1_000_000, 256


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: its folder, manifest, encoder and template matrix."""

    path: Path
    manifest: dict[str, Any]
    encoder: Any
    matrix: Any
    exact: Any = None  # float32 TemplateMatrix to re-score int8 candidates with (int8 bundles only)
    precision: str = "fp32"

    @property
    def threshold(self) -> float | None:
        t = self.manifest.get("threshold")
        return None if t is None else float(t)


def _model_dir_of(gallery) -> Path:
    """The ONNX model (dir or file) a gallery's templates come from; bundles carry only ONNX models."""
    enc = gallery.encoder
    path = getattr(enc, "path_", None)
    if path is None:
        raise ConfigError(f"gallery {gallery.path} was built with {enc.model_id!r}, which is not an ONNX model: "
                          "a bundle carries the compressed network; fit one first (hybridface fit --db G --out G2)")
    return Path(path)


def write_bundle(gallery_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                 model: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write the bundle of gallery ``gallery_path`` into ``out_dir`` (atomically; an old bundle is replaced).
    Returns the manifest (with ``bytes``: the bundle's size on disk)."""
    from hybridface.api import open_gallery
    from hybridface.models.card import load_card, write_card
    from dataclasses import replace

    out = Path(out_dir)
    if out.exists() and not (out / MANIFEST).is_file():
        raise ConfigError(f"--bundle {out} exists and is not a hybridface bundle; choose a new folder")
    if not out.parent.is_dir():
        raise ConfigError(f"--bundle {out}: folder {out.parent} does not exist")
    with open_gallery(gallery_path, model=model, readonly=True) as g:
        onnx_path = _model_dir_of(g)
        m = g.matrix()
        if m.num_templates == 0:
            raise ConfigError(f"gallery {g.path} has no templates; nothing to bundle")
        threshold = g.threshold
    card, fp32 = load_card(onnx_path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        shutil.copyfile(fp32, tmp / "model.onnx")
        write_card(replace(card, onnx_file="model.onnx"), tmp / "model.json")
        files = ["model.onnx", "model.json"]
        int8 = fp32.with_name(fp32.stem + ".int8.onnx")
        if int8.is_file() and int8.with_suffix(".json").is_file():
            c8, p8 = load_card(int8)
            shutil.copyfile(p8, tmp / "model.int8.onnx")
            write_card(replace(c8, onnx_file="model.int8.onnx"), tmp / "model.int8.json")
            files += ["model.int8.onnx", "model.int8.json"]
        arrays = {"templates": np.ascontiguousarray(m.vectors, np.float32), "labels": m.labels.astype(np.int32),
                  "names": np.array(m.names, dtype=str)}
        if m.codewords is not None:
            arrays["codewords"] = np.ascontiguousarray(m.codewords, np.float32)
            arrays["codeword_labels"] = m.codeword_labels.astype(np.int32)
        np.savez(tmp / "gallery.npz", **arrays)
        files.append("gallery.npz")
        from hybridface.search.int8 import quantize_int8

        q8 = quantize_int8(arrays["templates"])
        np.savez(tmp / "gallery.int8.npz", codes=q8.codes, scale=q8.scale, labels=arrays["labels"],
                 names=arrays["names"])
        files.append("gallery.int8.npz")
        manifest = {"format": BUNDLE_FORMAT, "model_id": card.model_id, "dim": int(m.dim),
                    "identities": int(m.num_identities), "templates": int(m.num_templates),
                    "threshold": threshold, "source": str(Path(gallery_path).resolve()), "created": time.time(),
                    "files": files}
        sizes = {f: (tmp / f).stat().st_size for f in files}
        fp32_set = ["model.onnx", "model.json", "gallery.npz"]
        int8_set = ["model.int8.onnx" if "model.int8.onnx" in files else "model.onnx",
                    "model.int8.json" if "model.int8.onnx" in files else "model.json", "gallery.int8.npz"]
        budget = BUDGET_BASE + BUDGET_PER_TEMPLATE * manifest["templates"]
        manifest["sizes"] = {"fp32_bytes": sum(sizes[f] for f in fp32_set),
                             "int8_bytes": sum(sizes[f] for f in int8_set), "budget_bytes": budget}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["bytes"] = sum((out / f).stat().st_size for f in [*files, MANIFEST])
    return manifest


def load_bundle(path: str | os.PathLike, *, precision: str = "fp32") -> Bundle:
    """Load a bundle folder (`ModelFileError` when it is not one or does not match its model)."""
    from hybridface.models.encoders import OnnxEncoder

    p = Path(path)
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{p} is not a hybridface bundle (no readable {MANIFEST}): write one with "
                             "hybridface export G2 --bundle DIR") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ModelFileError(f"{p}: bundle format {manifest.get('format')!r}, this hybridface reads {BUNDLE_FORMAT}")
    if precision not in ("fp32", "int8"):
        raise ConfigError(f"bundle precision must be fp32 or int8, got {precision!r}")
    # int8: the int8 model when the fit made one, else the fp32 model; int8 templates required
    stem = "model.int8" if precision == "int8" and (p / "model.int8.onnx").is_file() else "model"
    if not (p / f"{stem}.onnx").is_file():
        raise ModelFileError(f"bundle {p} has no {stem}.onnx; re-export it with hybridface export G2 --bundle DIR")
    if precision == "int8" and not (p / "gallery.int8.npz").is_file():
        raise ModelFileError(f"bundle {p} has no int8 templates (gallery.int8.npz); re-export it with this "
                             "hybridface, or use float32 storage")
    enc = OnnxEncoder(p / f"{stem}.onnx")
    exact = None
    if (p / "gallery.npz").is_file():
        exact = _load_matrix(p / "gallery.npz", manifest["model_id"])
    elif precision == "fp32":
        raise ModelFileError(f"bundle {p} has no float32 templates (gallery.npz); use --storage int8")
    matrix = exact
    if precision == "int8":
        matrix = _load_matrix(p / "gallery.int8.npz", manifest["model_id"], codewords_from=exact)
    if stem == "model" and enc.model_id != manifest["model_id"]:
        raise ModelFileError(f"bundle {p}: model.onnx is not the model its templates were made with")
    if enc.dim != matrix.dim:
        raise ModelFileError(f"bundle {p}: {enc.dim}-D model but {matrix.dim}-D templates")
    return Bundle(p, manifest, enc, matrix, exact if precision == "int8" else None, precision)


def _load_matrix(path: Path, model_id: str, *, codewords_from=None):
    """The `TemplateMatrix` of a bundle's ``gallery.npz`` (float32) or ``gallery.int8.npz`` (decoded)."""
    from hybridface.gallery.matrix import TemplateMatrix

    with np.load(path, allow_pickle=False) as z:
        names = [str(x) for x in z["names"]]
        labels = z["labels"]
        if "codes" in z.files:
            vecs = z["codes"].astype(np.float32) * z["scale"].astype(np.float32)[None, :]
        else:
            vecs = z["templates"]
        matrix = TemplateMatrix.from_arrays(vecs, [names[i] for i in labels], model_id=model_id)
        if "codewords" in z.files:
            matrix = matrix.with_codebooks(z["codewords"], z["codeword_labels"].astype(np.int64))
    if codewords_from is not None and codewords_from.codewords is not None:
        matrix = matrix.with_codebooks(codewords_from.codewords, codewords_from.codeword_labels)
    return matrix


def _rescore(exact, probes: np.ndarray, identities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 distances (1 - best cosine over the identity's rows) of each probe's candidate
    identities (``-1`` = none), sorted; the best ``k`` per probe."""
    n = len(probes)
    ids = np.full((n, k), -1, np.int64)
    dist = np.full((n, k), np.inf, np.float32)
    for i in range(n):
        cands = [int(j) for j in identities[i] if j >= 0]
        d = [1.0 - float((exact.vectors[exact.rows(j)] @ probes[i]).max()) for j in cands]
        order = sorted(range(len(cands)), key=lambda t: (d[t], cands[t]))[:k]
        ids[i, :len(order)] = [cands[t] for t in order]
        dist[i, :len(order)] = [d[t] for t in order]
    return ids, dist


def identify_bundle(bundle: Bundle | str | os.PathLike, images: Sequence[Any], *, strategy: str = "hybrid",
                    top_n: int = 5, workers: int = 1, k: int = 5, threshold: float | None = None,
                    detect: str = "never", detector: str = "cascade", precision: str = "fp32") -> list:
    """1:N identification of images against a bundle: one `Identification` per input, in order
    (``precision="int8"``: int8 model and templates, exact float32 re-scoring; module docstring)."""
    from hybridface.prepare import crop_size, encode_crops, prepare_images
    from hybridface.results import Identification
    from hybridface.search import make_searcher

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, precision=precision)
    threshold = b.threshold if threshold is None else float(threshold)
    prepared = prepare_images(list(images), detect=detect, detector=detector, size=crop_size(b.encoder))
    good = [p for p in prepared if p.crop is not None]
    answers = iter(())
    if good:
        probes = encode_crops(b.encoder, [p.crop for p in good])
        wide = int(k) if b.exact is None else min(b.matrix.num_identities, max(int(k), int(top_n)))
        res = make_searcher(strategy, b.matrix, top_n=top_n, workers=workers).search(probes, k=wide)
        ids, dists = res.identities, res.distances
        if b.exact is not None:  # int8 candidates, re-scored exactly against the float32 templates
            ids, dists = _rescore(b.exact, probes, ids, int(k))
        out = []
        for i, p in enumerate(good):
            cands = tuple((b.matrix.names[int(j)], float(d)) for j, d in zip(ids[i], dists[i]) if j >= 0)
            best = cands[0] if cands else (None, None)
            known = best[0] is not None and (threshold is None or best[1] <= threshold)
            out.append(Identification(p.source, best[0] if known else None, best[1], cands))
        answers = iter(out)
    return [next(answers) if p.crop is not None else
            Identification(p.source, None, None, (), p.status, str(p.error)) for p in prepared]
