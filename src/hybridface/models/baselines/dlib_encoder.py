"""dlib's ResNet face descriptor (128-D), with the weights shipped by ``face_recognition_models``.

dlib aligns its own 150x150 chip from the 5-point landmarks its shape predictor finds inside a
face box. The images given to `DlibEncoder.encode` are taken to be face crops, so the box is the
whole image (optionally shrunk by ``box_margin`` on each side).
"""

from __future__ import annotations

import logging
import warnings
from os import PathLike

import numpy as np

from hybridface.errors import MissingDependencyError, ModelFileError, require
from hybridface.hashing import file_sha256
from hybridface.models.base import to_uint8_batch
from hybridface.models.base import ImageBatch, l2_normalize

log = logging.getLogger(__name__)


def default_model_files() -> tuple[str, str]:
    """``(resnet descriptor .dat, 5-point shape predictor .dat)`` from ``face_recognition_models``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its pkg_resources deprecation warning
        frm = require("face_recognition_models", "dlib")
    return frm.face_recognition_model_location(), frm.pose_predictor_five_point_model_location()


class DlibEncoder:
    """128-D dlib ResNet descriptor as an `Encoder` (``input_size`` 150x150; larger crops are fine).

    Args:
        weights: the ``dlib_face_recognition_resnet_model_v1.dat`` path (default: the shipped one).
        predictor: the 5-point ``shape_predictor_5_face_landmarks.dat`` path (default: shipped).
        input_size: crop side the images are resized to before landmarking.
        box_margin: fraction of the side trimmed from each edge to form the face box.
    """

    dim = 128

    def __init__(
        self,
        weights: str | PathLike | None = None,
        *,
        predictor: str | PathLike | None = None,
        input_size: int = 150,
        box_margin: float = 0.0,
        num_jitters: int = 0,
    ) -> None:
        dlib = require("dlib", "dlib")
        if weights is None or predictor is None:
            try:
                d_w, d_p = default_model_files()
            except MissingDependencyError:
                if weights is None:
                    raise
                d_w = d_p = None
            weights = weights if weights is not None else d_w
            predictor = predictor if predictor is not None else d_p
        try:
            self._net = dlib.face_recognition_model_v1(str(weights))
            self._sp = dlib.shape_predictor(str(predictor))
        except RuntimeError as exc:
            raise ModelFileError(
                f"dlib could not load {weights} / {predictor}: {exc}; pass dlib's "
                "dlib_face_recognition_resnet_model_v1.dat and shape_predictor_5_face_landmarks.dat"
            ) from exc
        self._dlib = dlib
        self.model_id = f"dlib-resnet-{file_sha256(weights)[:16]}"
        self.input_size = (int(input_size), int(input_size))
        self.box_margin = float(box_margin)
        self.num_jitters = int(num_jitters)
        self.has_weights = True

    def encode(self, images: ImageBatch) -> np.ndarray:
        batch = to_uint8_batch(images, self.input_size)
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        h, w = self.input_size
        m = int(round(self.box_margin * min(h, w)))
        box = self._dlib.rectangle(m, m, w - 1 - m, h - 1 - m)
        chips = [
            np.ascontiguousarray(self._dlib.get_face_chip(img, self._sp(img, box), size=150, padding=0.25))
            for img in batch
        ]
        desc = self._net.compute_face_descriptor(chips, self.num_jitters)
        return l2_normalize(np.asarray([np.asarray(d) for d in desc], dtype=np.float32))
