"""Encoders for the compressed VGGFace network: ONNX Runtime (default) and PyTorch (training).

Both call :func:`hybridface.models.preprocess.preprocess` with the spec from the model card, so
they give the same features (cosine ≥ 0.9999). Inputs: a uint8 ``(n, H, W, 3)`` RGB batch (other
sizes are resized to the model's input with ``INTER_AREA``) or a list of image paths (read with
:mod:`hybridface.faces` as already-cropped faces, ``detect="never"``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, ModelFileError
from hybridface.models.base import ImageBatch, l2_normalize
from hybridface.models.card import ModelCard, load_card
from hybridface.models.preprocess import PreprocessSpec, preprocess

__all__ = ["OnnxEncoder", "TorchEncoder", "load_model", "default_model_path", "shipped_model_path", "as_image_batch"]

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


#: the shipped model that ``load_model(None)`` loads: the general (distilled) model, made for
#: people no model has seen; ``classifier`` is the softmax-trained model of the same network
DEFAULT_MODEL = "general"


def default_model_path() -> Path:
    """The shipped default model (``weights/general.onnx`` + ``general.json``)."""
    return shipped_model_path(DEFAULT_MODEL)


def shipped_model_path(name: str) -> Path:
    """A model shipped inside the package: ``weights/<name>.onnx`` (+ ``<name>.json``): ``general``, ``classifier``."""
    return WEIGHTS_DIR / f"{name}.onnx"


def as_image_batch(images: ImageBatch, size: int) -> np.ndarray:
    """uint8 ``(n, H, W, 3)`` batch from an array or a list of paths (paths cropped to ``size``)."""
    if isinstance(images, np.ndarray):
        return images
    if isinstance(images, (str, Path)):
        images = [images]
    items = list(images)
    if items and all(isinstance(p, (str, Path)) or hasattr(p, "__fspath__") for p in items):
        from hybridface.models.data import load_face

        return np.stack([load_face(p, size=size) for p in items])
    if not items:
        return np.empty((0, size, size, 3), np.uint8)
    return np.asarray(items)


class OnnxEncoder:
    """ONNX Runtime encoder for a model directory (``model.onnx`` + ``model.json``) or ``x.onnx`` file.

    ``threads``: intra-op threads (``None`` → ONNX Runtime's default). Batches of at most
    ``SMALL_BATCH`` images run on a second, single-threaded session: for so small a network the
    thread hand-off costs more than it saves (batch 1 on 2 cores: ~10,000 vs ~7,000 faces/s).
    The card's hash is checked on load (:class:`ModelFileError` if tampered); ``batch_size``
    bounds memory per run.
    """

    SMALL_BATCH = 16

    def __init__(self, model_dir: str | Path, *, threads: int | None = None, batch_size: int = 1024) -> None:
        self.card_: ModelCard
        self.card_, self.path_ = load_card(model_dir)
        self._threads = threads
        self._session = self._new_session(threads)
        self._small_session: Any = None  # single-threaded twin for small batches, made on first use
        self.model_id: str = self.card_.model_id
        self.dim: int = int(self.card_.embedding_dim)
        s = int(self.card_.input_size)
        self.input_size: tuple[int, int] = (s, s)
        self.spec: PreprocessSpec = self.card_.spec
        self.batch_size = int(batch_size)

    def _new_session(self, threads: int | None) -> Any:
        from hybridface.models.ort import cpu_session

        return cpu_session(self.path_, threads=threads)

    def _session_for(self, n: int) -> Any:
        if n > self.SMALL_BATCH or self._threads == 1:
            return self._session
        if self._small_session is None:
            self._small_session = self._new_session(1)
        return self._small_session

    def encode_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Run the graph on float32 NCHW input that is already preprocessed."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        s = self.input_size[0]
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise ConfigError(f"preprocessed input must have shape (n, 3, {s}, {s}), got {x.shape}")
        if len(x) == 0:
            return np.empty((0, self.dim), np.float32)
        session = self._session_for(len(x))
        outs = [session.run(None, {self.card_.input_name: x[i:i + self.batch_size]})[0]
                for i in range(0, len(x), self.batch_size)]
        return l2_normalize(np.concatenate(outs))

    def encode(self, images: ImageBatch) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised templates (see module docstring for inputs)."""
        batch = as_image_batch(images, self.input_size[0])
        if len(batch) == 0:
            return np.empty((0, self.dim), np.float32)
        return self.encode_preprocessed(preprocess(batch, self.spec))

    def __repr__(self) -> str:
        return f"OnnxEncoder({str(self.path_)!r}, model_id={self.model_id[:12]}…, precision={self.card_.precision})"


class TorchEncoder:
    """PyTorch encoder around a :class:`CompressedVGGFace` (used by training and tests)."""

    def __init__(self, module: Any, spec: PreprocessSpec | None = None, *, model_id: str = "torch",
                 batch_size: int = 1024) -> None:
        self.module = module
        self.spec = spec or PreprocessSpec()
        self.model_id = model_id
        self.dim = int(module.fc2.out_features)
        s = int(self.spec.input_size)
        self.input_size = (s, s)
        self.batch_size = int(batch_size)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> "TorchEncoder":
        """The PyTorch twin of an fp32 model directory (same weights, spec and model id)."""
        from hybridface.models.compressed import network_from_onnx

        card, onnx_path = load_card(model_dir)
        return cls(network_from_onnx(onnx_path), card.spec, model_id=card.model_id)

    def encode_preprocessed(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.ascontiguousarray(x, dtype=np.float32)
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                outs = [self.module.features(torch.from_numpy(x[i:i + self.batch_size])).numpy()
                        for i in range(0, len(x), self.batch_size)]
        finally:
            self.module.train(was_training)
        return l2_normalize(np.concatenate(outs)) if outs else np.empty((0, self.dim), np.float32)

    def encode(self, images: ImageBatch) -> np.ndarray:
        batch = as_image_batch(images, self.input_size[0])
        if len(batch) == 0:
            return np.empty((0, self.dim), np.float32)
        return self.encode_preprocessed(preprocess(batch, self.spec))


def load_model(path: str | Path | None = None, *, threads: int | None = None) -> OnnxEncoder:
    """:class:`OnnxEncoder` for ``path`` (model dir or ``.onnx``); ``None`` → the shipped default model."""
    if path is None:
        path = default_model_path()
        if not path.is_file():
            raise ModelFileError(f"the shipped default model is missing: {path} (reinstall hybridface)")
    return OnnxEncoder(path, threads=threads)
