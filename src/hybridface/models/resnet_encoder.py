"""The ``resnet`` encoder: dlib's face-descriptor ResNet run by ONNX Runtime.

The ONNX file is generated on first use from the installed ``.dat`` (``face_recognition_models``)
and cached as ``<cache>/resnet-v1-<sha256 of the .dat>.onnx`` beside a ``.sha256`` file holding
the ONNX file's hash. Both are written to a temporary name and renamed, so a crash never leaves
a half-written model under the final name; a file whose hash does not match is rebuilt, never
used. Building needs the ``onnx`` package (``hybridface[train]``); running needs only NumPy,
OpenCV and ONNX Runtime.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from hybridface.errors import ConfigError, ModelFileError, require
from hybridface.hashing import file_sha256
from hybridface.models.base import ImageBatch, l2_normalize
from hybridface.cache import default_cache_dir, is_verified, write_verified
from hybridface.models.dlib_format import INSTALL_HINT, default_dat_path

log = logging.getLogger(__name__)

FORMAT_TAG = "resnet-v1"  # bump when the generated graph changes


def cached_onnx_path(dat: str | PathLike | None = None, *, cache_dir: str | PathLike | None = None) -> Path:
    """Return the verified cached ONNX file for ``dat``, generating it first if needed."""
    dat = Path(dat) if dat is not None else default_dat_path()
    if not dat.is_file():
        raise ModelFileError(f"dlib model file {dat} does not exist; {INSTALL_HINT}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{FORMAT_TAG}-{file_sha256(dat)[:16]}.onnx"
    if is_verified(path):
        return path
    from hybridface.models.dlib_format import read_dlib_net
    from hybridface.models.resnet import build_onnx, resnet_spec

    spec = resnet_spec(read_dlib_net(dat))
    require("onnx", "train")
    data = build_onnx(spec).SerializeToString()
    write_verified(path, data)
    log.info("generated %s (%d bytes) from %s", path, len(data), dat)
    return path


class ResNetEncoder:
    """dlib's 128-D ResNet descriptor on ONNX Runtime, as an `Encoder` (face crops in).

    ``encode`` takes face crops (as `DlibEncoder` does): each is resized to ``input_size``, its
    5 landmarks are found inside the whole-image box (shrunk by ``box_margin``) by our port of
    dlib's shape predictor, and the 150x150 chip is cut as dlib's ``get_face_chip`` does.
    ``embed_chips`` takes aligned chips directly.

    Args:
        weights: the ``dlib_face_recognition_resnet_model_v1.dat`` (default: the installed one), or
            a ready ``.onnx`` file with the same input/output (e.g. the int8 model).
        threads: ONNX Runtime intra-op threads (``None``: its default).
        cache_dir: where the generated ONNX file lives (default `default_cache_dir`).
        predictor: ``shape_predictor_5_face_landmarks.dat`` (default: the installed one).
        input_size: crop side the images are resized to before landmarking.
        box_margin: fraction of the side trimmed from each edge to form the face box.
        batch_size: chips per ONNX Runtime call.
    """

    dim = 128

    def __init__(self, weights: str | PathLike | None = None, *, threads: int | None = None,
                 cache_dir: str | PathLike | None = None, predictor: str | PathLike | None = None,
                 input_size: int = 150, box_margin: float = 0.0, batch_size: int = 64) -> None:
        dat: Path | None = None
        if weights is not None and str(weights).endswith(".onnx"):
            self.path_ = Path(weights)
            if not self.path_.is_file():
                raise ModelFileError(f"ONNX model {self.path_} does not exist")
        else:
            dat = Path(weights) if weights is not None else default_dat_path()
            self.path_ = cached_onnx_path(dat, cache_dir=cache_dir)
        # Built from dlib's .dat, the port is exact (cosine >= 0.9999998 to dlib's descriptors on
        # 1,000 shared faces), so it carries dlib's model id: a gallery enrolled with either runtime
        # is searched by the other. Any other ONNX file (int8, students) gets its own id.
        self.model_id = (f"dlib-resnet-{file_sha256(dat)[:16]}" if dat is not None
                         else f"resnet-{file_sha256(self.path_)[:16]}")
        self.input_size = (int(input_size), int(input_size))
        self.box_margin = float(box_margin)
        self.batch_size = int(batch_size)
        self.has_weights = True
        self._predictor_path = predictor
        self._cache_dir = cache_dir
        self._predictor: Any = None
        self._session = self._new_session(threads)

    def _new_session(self, threads: int | None) -> Any:
        from hybridface.models.ort import cpu_session

        from hybridface.models.ort import WEIGHT_ONLY_KEY

        hint = "; delete it to have it regenerated"
        session = cpu_session(self.path_, threads=threads, hint=hint)
        if session.get_modelmeta().custom_metadata_map.get(WEIGHT_ONLY_KEY) == "weights":
            # weight-only int8: fold the dequantisation into float weights once, at load time
            session = cpu_session(self.path_, threads=threads, hint=hint, config={"session.disable_quant_qdq": "1"})
        return session

    def descriptors(self, chips: np.ndarray) -> np.ndarray:
        """dlib's raw (unnormalised) descriptors ``(n, 128)`` of uint8 ``(n, 150, 150, 3)`` RGB chips."""
        from hybridface.models.resnet import CHIP_SIZE

        if not isinstance(chips, np.ndarray) or chips.dtype != np.uint8:
            raise ConfigError(f"chips must be a uint8 numpy array, got {getattr(chips, 'dtype', type(chips))}")
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ConfigError(f"chips must have shape (n, {CHIP_SIZE}, {CHIP_SIZE}, 3) (aligned RGB chips), "
                              f"got {chips.shape}")
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        chips = np.ascontiguousarray(chips)
        outs = [self._session.run(None, {"chips": chips[i:i + self.batch_size]})[0]
                for i in range(0, len(chips), self.batch_size)]
        return np.ascontiguousarray(np.concatenate(outs), dtype=np.float32)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised templates of aligned chips."""
        return l2_normalize(self.descriptors(chips))

    def chips(self, images: ImageBatch) -> np.ndarray:
        """Aligned 150x150 chips of face crops (landmarks inside the whole-crop box)."""
        from hybridface.models.base import to_uint8_batch
        from hybridface.models.chip import face_chips
        from hybridface.models.landmarks import ShapePredictor

        batch = to_uint8_batch(images, self.input_size)
        if self._predictor is None:
            self._predictor = ShapePredictor(self._predictor_path, cache_dir=self._cache_dir)
        h, w = self.input_size
        m = int(round(self.box_margin * min(h, w)))
        boxes = np.tile(np.array([m, m, w - 1 - m, h - 1 - m], np.float64), (len(batch), 1))
        return face_chips(batch, self._predictor.predict(batch, boxes))

    def encode(self, images: ImageBatch) -> np.ndarray:
        """``(n, 128)`` float32 L2-normalised templates of face crops."""
        chips = self.chips(images)
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_chips(chips)

    def __repr__(self) -> str:
        return f"ResNetEncoder({self.path_.name}, id={self.model_id})"
