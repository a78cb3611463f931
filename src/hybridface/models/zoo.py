"""One entry point for every feature extractor: ``load_encoder(name, weights=..., **options)``.

| name | what | weights |
|---|---|---|
| ``compressed`` | our compressed VGGFace (ONNX) | model dir, or the shipped ``general`` |
| ``general`` | shipped: distilled from dlib; *experimental* for people the model never saw (the fallback default without dlib) | model dir, or ``weights/general.onnx`` |
| ``classifier`` | shipped: the same network trained with softmax on the datasets' gallery sides; *experimental* for people it never saw | model dir, or ``weights/classifier.onnx`` |
| ``paper`` | the authors' published weights | ``.npz`` (default: ``../shared/reference``) |
| ``vggface`` | VGG-16 face descriptor, fc7 4096-D | PyTorch state dict (see `vggface`) |
| ``inception_v3`` | Inception V3 pooled 2048-D | torchvision ImageNet checkpoint |
| ``dlib`` | dlib ResNet 128-D: the default of every front end when installed | shipped by ``face_recognition_models`` |
| ``resnet`` | the same ResNet on ONNX Runtime, ported (no dlib at run time) | the ``.dat`` (default: installed) or an ``.onnx`` |
| ``resnet-int8`` | its ONNX Runtime static int8 quantisation | ``.onnx`` (default: built and cached on first use) |
| ``resnet-small`` | shipped: a distilled, channel-pruned student of that ResNet (int8, ≤ 2 MB) | ``.onnx``, or ``weights/resnet-small.int8.onnx`` |
| ``resnet-tiny`` | shipped: a shallow, pruned student (7 blocks, 112 px inside, int8 weights, ≤ 500 KB) | ``.onnx``, or ``weights/resnet-tiny.int8.onnx`` |

Without a weights file ``vggface``/``inception_v3`` (and ``paper`` when the reference file is
absent) run their real architecture on a seeded random initialisation and report
``has_weights = False``: their timings are honest, their accuracy is meaningless.
"""

from __future__ import annotations

import importlib
from os import PathLike

from hybridface.errors import ConfigError, ModelFileError
from hybridface.models.base import Encoder

MODEL_NAMES: tuple[str, ...] = ("compressed", "general", "classifier", "paper", "vggface", "inception_v3", "dlib",
                                "resnet", "resnet-int8", "resnet-small", "resnet-tiny")
#: the shipped ResNet students: ``weights/<name>.int8.onnx`` + ``weights/<name>.json`` (their card)
RESNET_STUDENTS: tuple[str, ...] = ("resnet-small", "resnet-tiny")


#: name → (module, class) of the encoders built as ``cls(weights, **options)``, imported on first use
_CLASSES: dict[str, tuple[str, str]] = {
    "paper": ("hybridface.models.baselines.paper_encoder", "PaperEncoder"),
    "vggface": ("hybridface.models.baselines.vggface", "VGGFaceEncoder"),
    "inception_v3": ("hybridface.models.baselines.inception", "InceptionV3Encoder"),
    "dlib": ("hybridface.models.baselines.dlib_encoder", "DlibEncoder"),
    "resnet": ("hybridface.models.resnet_encoder", "ResNetEncoder"),
}


def has_weights(encoder: Encoder) -> bool:
    """False only for an encoder that says it runs on random weights."""
    return bool(getattr(encoder, "has_weights", True))


def shipped_student_path(name: str):
    """The verified ``weights/<name>.int8.onnx`` of a shipped ResNet student: `ModelFileError` when
    the file or its card ``weights/<name>.json`` is missing, or the file's hash is not the card's."""
    import json

    from hybridface.hashing import file_sha256
    from hybridface.models.encoders import WEIGHTS_DIR

    path, card = WEIGHTS_DIR / f"{name}.int8.onnx", WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise ModelFileError(f"the {name} model file is missing: {path} is not in this installation; "
                             f"reinstall hybridface, or pass weights= an .onnx file of the student")
    try:
        want = json.loads(card.read_text())["int8"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"the {name} model card {card} is missing or malformed ({exc}); reinstall hybridface") from exc
    if file_sha256(path) != want:
        raise ModelFileError(f"{path} does not match its card {card.name} (changed or damaged); reinstall hybridface")
    return path


def load_encoder(name: str, *, weights: str | PathLike | None = None, **options) -> Encoder:
    """Build the encoder called ``name`` (one of `MODEL_NAMES`); `ConfigError` for other names."""
    if name == "compressed":
        from hybridface.models.encoders import load_model

        return load_model(weights, **options)
    if name in ("general", "classifier"):
        from hybridface.models.encoders import load_model, shipped_model_path

        path = weights if weights is not None else shipped_model_path(name)
        if weights is None and not path.is_file():
            raise ModelFileError(f"the shipped {name} model is missing: {path} (reinstall hybridface)")
        return load_model(path, **options)
    if name in _CLASSES:
        module, cls = _CLASSES[name]
        return getattr(importlib.import_module(module), cls)(weights, **options)
    if name in RESNET_STUDENTS:
        from hybridface.models.resnet_encoder import ResNetEncoder

        return ResNetEncoder(weights if weights is not None else shipped_student_path(name), **options)
    if name == "resnet-int8":
        from hybridface.models.resnet_encoder import ResNetEncoder
        from hybridface.models.resnet_int8 import cached_int8_path

        calibration = options.pop("calibration", None)
        if weights is None or not str(weights).endswith(".onnx"):
            weights = cached_int8_path(weights, calibration=calibration, cache_dir=options.get("cache_dir"))
        return ResNetEncoder(weights, **options)
    raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
