"""Model cards: the small JSON file beside every ONNX model.

A model is a pair ``<stem>.onnx`` + ``<stem>.json``. A *model directory* holds ``model.onnx`` +
``model.json`` (and, after ``hybridface export --int8``, ``model.int8.onnx`` + ``model.int8.json``).
The card's ``model_id`` is the sha256 of the ONNX file's bytes; :func:`load_card` recomputes it and
refuses a card whose ONNX file was changed (:class:`ModelFileError`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hybridface.hashing import file_sha256
from hybridface.errors import ModelFileError
from hybridface.models.preprocess import PreprocessSpec

__all__ = ["ModelCard", "sha256_file", "resolve_model_paths", "load_card", "write_card", "library_versions",
           "CARD_FORMAT", "MODEL_STEM"]

CARD_FORMAT = "hybridface-model-card/1"
MODEL_STEM = "model"


@dataclass(frozen=True)
class ModelCard:
    """What a model is and how it must be fed. ``model_id`` = sha256 of the ONNX file."""

    model_id: str
    onnx_file: str
    input_size: int
    embedding_dim: int
    preprocessing: dict[str, Any]
    precision: str = "fp32"
    input_name: str = "input"
    output_name: str = "embedding"
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    format: str = CARD_FORMAT

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.preprocessing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


sha256_file = file_sha256  # the model id of an ONNX file


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter for reproducing a model (those importable)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("hybridface", "numpy", "torch", "onnx", "onnxruntime", "opencv-python-headless"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def resolve_model_paths(path: str | Path) -> tuple[Path, Path]:
    """``model_dir`` → (``model.onnx``, ``model.json``); ``x.onnx`` or ``x.json`` → the pair with that stem."""
    p = Path(path)
    if p.is_dir():
        onnx_path, card_path = p / f"{MODEL_STEM}.onnx", p / f"{MODEL_STEM}.json"
    elif p.suffix in (".onnx", ".json"):
        onnx_path, card_path = p.with_suffix(".onnx"), p.with_suffix(".json")
    elif not p.exists():
        raise ModelFileError(f"model not found: {p} (give a model directory or an .onnx file)")
    else:
        raise ModelFileError(f"{p} is not a model directory or an .onnx/.json model file")
    if not onnx_path.is_file():
        raise ModelFileError(f"model file missing: {onnx_path}")
    if not card_path.is_file():
        raise ModelFileError(f"model card missing: {card_path} (every model needs its JSON card beside the .onnx)")
    return onnx_path, card_path


def load_card(path: str | Path, *, verify: bool = True) -> tuple[ModelCard, Path]:
    """Read and check the card for ``path``; return ``(card, onnx_path)``.

    Raises :class:`ModelFileError` when the card is missing, not valid JSON, lacks fields, or (with
    ``verify``) its ``model_id`` does not match the sha256 of the ONNX file (tampered or swapped).
    """
    onnx_path, card_path = resolve_model_paths(path)
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model card {card_path} is not readable JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
        raise ModelFileError(f"{card_path} is not a hybridface model card (expected format {CARD_FORMAT!r})")
    try:
        card = ModelCard(**raw)
        card.spec  # validates the preprocessing spec
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model card {card_path} is malformed ({exc})") from exc
    if verify:
        actual = sha256_file(onnx_path)
        if actual != card.model_id:
            raise ModelFileError(
                f"model {onnx_path} does not match its card {card_path}: sha256 {actual[:12]}… != model_id "
                f"{card.model_id[:12]}… (file changed or swapped; re-export or retrain the model)")
    return card, onnx_path


def write_card(card: ModelCard, card_path: str | Path) -> Path:
    p = Path(card_path)
    p.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return p
