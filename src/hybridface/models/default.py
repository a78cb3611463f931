"""Which encoder a front end uses when the user names none (``--model`` left out).

The accurate default is dlib's ResNet (128-D) whenever its weights (``face_recognition_models``)
are installed. It runs on ONNX Runtime through our exact port (``resnet``: same descriptors, same
model id, 13-17x faster than dlib's runtime), or on dlib's own runtime where the port cannot be
built (no ``onnx`` package and no cached file). Without the weights the shipped compressed
``general`` model is used, with ONE logged warning per process saying what accuracy to expect and
how to install dlib. An existing gallery
always gets *its own* model back (:func:`encoder_for_gallery`): dlib, a shipped model, or the
fitted model a ``hybridface fit`` gallery points at.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from hybridface.errors import MissingDependencyError
from hybridface.models.base import Encoder

log = logging.getLogger(__name__)

__all__ = ["DLIB_PREFIX", "FALLBACK_WARNING", "default_encoder", "default_model_name", "encoder_for_gallery",
           "dlib_available"]

#: model ids of dlib's ResNet start with this (see `hybridface.models.baselines.dlib_encoder`)
DLIB_PREFIX = "dlib-resnet-"
FALLBACK_MODEL = "general"
FALLBACK_WARNING = (
    "dlib is not installed, so hybridface falls back to the compressed 'general' model (25K parameters): "
    "it is experimental for people it never saw (about 2 %% Rank-1 on an open-world photo benchmark of "
    "1,680 people, 38-84 %% on lab datasets where dlib reaches 73-99 %%). For accurate identification "
    "install dlib: pip install 'hybridface[dlib]' (%s)"
)

_warned = False
_lock = threading.Lock()


def dlib_available() -> bool:
    """True when dlib's ResNet can be built: its weights (``face_recognition_models``) import, and
    either ``dlib`` or ``onnxruntime`` (the ``resnet`` port) can run them."""
    import importlib

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models' pkg_resources warning
            importlib.import_module("face_recognition_models")
    except ImportError:
        return False
    for runtime in ("onnxruntime", "dlib"):
        try:
            importlib.import_module(runtime)
            return True
        except ImportError:
            continue
    return False


def _accurate_encoder() -> Encoder:
    """dlib's ResNet: the ONNX Runtime port (``resnet``) when it can be built, else dlib's runtime."""
    from hybridface.models.zoo import load_encoder

    try:
        return load_encoder("resnet")
    except MissingDependencyError as exc:
        log.debug("resnet port unavailable (%s); using dlib's runtime", exc)
        return load_encoder("dlib")


def default_model_name() -> str:
    """``"dlib"`` (dlib's ResNet, on the ``resnet`` port or dlib's runtime) when available, else
    ``"general"`` (no warning; see :func:`default_encoder`)."""
    return "dlib" if dlib_available() else FALLBACK_MODEL


def _warn_once(reason: str) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    log.warning(FALLBACK_WARNING, reason)


def default_encoder() -> Encoder:
    """dlib's ResNet, or (once-warned) the shipped compressed model when dlib is missing."""
    from hybridface.models.zoo import load_encoder

    try:
        return _accurate_encoder()
    except MissingDependencyError as exc:
        _warn_once(str(exc).split(";")[0])
        return load_encoder(FALLBACK_MODEL)


def _shipped_ids() -> dict[str, str]:
    """``model_id -> name`` of the models shipped in the package (read from their cards, no ONNX load)."""
    from hybridface.models.encoders import WEIGHTS_DIR

    out = {}
    for card in WEIGHTS_DIR.glob("*.json"):
        try:
            out[json.loads(card.read_text())["model_id"]] = card.stem
        except (OSError, ValueError, KeyError):  # pragma: no cover - a damaged install
            continue
    return out


def encoder_for_gallery(model_id: str | None, *, model_path: str | Path | None = None) -> Encoder:
    """The encoder a gallery with ``model_id`` was built with, when the user names none.

    ``model_path``: the model directory a fitted gallery records (``hybridface fit``). Unknown
    ids get :func:`default_encoder`; the gallery's model check then says which ``--model`` to pass.
    """
    from hybridface.models.encoders import load_model
    from hybridface.models.zoo import load_encoder

    if model_path is not None and Path(model_path).exists():
        return load_model(model_path)
    if model_id is None:
        return default_encoder()
    if model_id.startswith(DLIB_PREFIX):
        return _accurate_encoder()  # missing weights: a clear MissingDependencyError here
    name = _shipped_ids().get(model_id)
    if name is not None:
        return load_encoder(name)
    return default_encoder()
