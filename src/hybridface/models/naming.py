"""Human names for model ids, so a model mismatch names models (``general``), not sha256 hashes."""

from __future__ import annotations

import json
from pathlib import Path

#: The models shipped inside the package (``weights/<name>.json`` cards).
SHIPPED = ("general", "classifier", "resnet-small", "resnet-tiny")


def shipped_name(model_id: str | None) -> str | None:
    """The shipped model (``general``, ``classifier``, ``resnet-tiny``, ...) whose card has this id, else ``None``."""
    if not model_id:
        return None
    from hybridface.models.encoders import WEIGHTS_DIR

    for name in SHIPPED:
        card = Path(WEIGHTS_DIR) / f"{name}.json"
        try:
            if json.loads(card.read_text(encoding="utf-8")).get("model_id") == model_id:
                return name
        except (OSError, ValueError):
            continue
    return None


def model_label(model_id: str | None) -> str:
    """``the shipped 'general' model``, ``the 'paper' model (paper-0123…)`` or ``a model with id 0123…``."""
    if not model_id:
        return "no model"
    name = shipped_name(model_id)
    if name is not None:
        return f"the shipped {name!r} model"
    family = model_id.split("-", 1)[0]
    if family in ("paper", "dlib", "vggface", "inception_v3", "torch", "vec"):
        return f"the {family!r} model ({model_id[:28]})"
    if len(model_id) == 64 and all(c in "0123456789abcdef" for c in model_id):
        return f"a model with id {model_id[:12]}… (a model directory, not a shipped one)"
    return f"the model {model_id!r}"
