"""``resnet-int8``: ONNX Runtime static int8 quantisation of the ported dlib ResNet.

The fp32 graph with each affine folded into its convolution is quantised (QDQ, per-channel int8
weights, uint8 activations, MinMax calibration) on aligned chips of shared faces: by default
``calibration_faces`` evenly spaced images of ``unlabeled_faces/utkface`` (never an ``unseen``
rotation's held-out people), each image taken as the face box, aligned by our landmark and chip
ports. The result is cached beside the fp32 file (atomic write + hash check, like it).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from os import PathLike
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, DatasetError, require
from hybridface.hashing import file_sha256

log = logging.getLogger(__name__)

CALIBRATION_FACES = 256
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")


def default_calibration_dir() -> Path:
    from hybridface.config import shared_datasets_dir

    d = shared_datasets_dir()
    if d is None or not (d / "unlabeled_faces" / "utkface").is_dir():
        raise ConfigError("resnet-int8 is calibrated on face images: none found under the shared datasets; "
                          "pass calibration=DIR (a folder of face crops) or an int8 .onnx as weights")
    return d / "unlabeled_faces" / "utkface"


def calibration_files(folder: str | PathLike, *, n: int = CALIBRATION_FACES) -> list[Path]:
    """``n`` evenly spaced image files under ``folder`` (sorted, so the choice is reproducible)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images under {folder} to calibrate resnet-int8 on")
    idx = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(idx.tolist()))]


def calibration_chips(files: list[Path], *, cache_dir: str | PathLike | None = None) -> np.ndarray:
    """Aligned 150x150 chips of face crops (whole image = face box)."""
    from hybridface.faces.io import load_image
    from hybridface.models.chip import face_chips
    from hybridface.models.landmarks import ShapePredictor

    images = [load_image(f) for f in files]
    boxes = np.array([[0, 0, im.shape[1] - 1, im.shape[0] - 1] for im in images], np.float64)
    return face_chips(images, ShapePredictor(cache_dir=cache_dir).predict(images, boxes))


class _ChipReader:
    """onnxruntime ``CalibrationDataReader`` over uint8 chips."""

    def __init__(self, chips: np.ndarray, batch: int = 16) -> None:
        self._it = iter([chips[i:i + batch] for i in range(0, len(chips), batch)])

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {"chips": b}


CALIBRATIONS = ("minmax", "percentile", "entropy")

#: which ops get int8 inputs/outputs: ``all`` (convolutions, the fc, residual adds, pools) or ``conv``
#: (convolutions only: the residual adds, pools and the 128-D projection stay float, which small
#: students need: quantising the fc and adds took the width-0.25 student's centred agreement with
#: its fp32 self from 0.90 to 0.72)
QUANTIZE_OPS = {"all": ["Conv", "MatMul", "Add", "AveragePool", "MaxPool", "GlobalAveragePool"], "conv": ["Conv"]}


def quantize_onnx(fp32: str | PathLike, out: str | PathLike, chips: np.ndarray, *, per_channel: bool = True,
                  calibrate: str = "minmax", percentile: float = 99.999, ops: str = "all") -> int:
    """Static int8 (QDQ, int8 weights, uint8 activations) of a uint8-chip ONNX model ``fp32``,
    calibrated on ``chips``: ``per_channel`` weight scales (else one per tensor), activation
    ranges by ``calibrate`` (``minmax``; ``percentile``: the ``percentile`` % of each
    activation's histogram, robust to rare outliers that waste a narrow layer's 256 levels;
    ``entropy``: KL-optimal clipping); ``ops``: a `QUANTIZE_OPS` key. Returns the bytes written."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibrate not in CALIBRATIONS:
        raise ConfigError(f"calibrate must be one of {', '.join(CALIBRATIONS)}, got {calibrate!r}")
    if ops not in QUANTIZE_OPS:
        raise ConfigError(f"ops must be one of {', '.join(QUANTIZE_OPS)}, got {ops!r}")
    if not 50 < percentile <= 100:
        raise ConfigError(f"percentile must be in (50, 100], got {percentile!r}")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibrate]
    extra = {"CalibPercentile": float(percentile)} if calibrate == "percentile" else {}
    quantize_static(
        str(fp32), str(out), _ChipReader(chips),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTIZE_OPS[ops],
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=method,
        extra_options=extra,
    )
    return Path(out).stat().st_size


def quantize_weights(fp32: str | PathLike, out: str | PathLike) -> int:
    """Weight-only int8 of an ONNX model: every Conv weight (per output channel) and MatMul weight
    (per output column) stored as symmetric int8 + a float scale behind a ``DequantizeLinear``;
    activations and arithmetic stay float. For students so small that ONNX Runtime's int8
    kernels lose to their quantize/dequantize overhead (the file is still ~4x smaller than fp32,
    and ONNX Runtime folds the dequantisation into float weights once, when the session opens).
    Returns the bytes written."""
    require("onnx", "train")
    import onnx
    from onnx import helper, numpy_helper

    from hybridface.models.ort import WEIGHT_ONLY_KEY

    model = onnx.load(str(fp32))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    done: dict[str, str] = {}
    for node in g.node:
        if node.op_type not in ("Conv", "MatMul") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        name = node.input[1]
        if name not in done:
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            axis = 0 if node.op_type == "Conv" else 1
            red = tuple(i for i in range(w.ndim) if i != axis)
            scale = np.maximum(np.abs(w).max(axis=red), 1e-12).astype(np.float32) / 127.0
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
            g.initializer.remove(inits[name])
            g.initializer.extend([numpy_helper.from_array(q, f"{name}.q"), numpy_helper.from_array(scale, f"{name}.s"),
                                  numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}.z")])
            g.node.insert(0, helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.s", f"{name}.z"],
                                              [f"{name}.dq"], axis=axis))
            done[name] = f"{name}.dq"
        node.input[1] = done[name]
    helper.set_model_props(model, {WEIGHT_ONLY_KEY: "weights"})
    onnx.checker.check_model(model)
    Path(out).write_bytes(model.SerializeToString())
    return Path(out).stat().st_size


def quantize_resnet(dat: str | PathLike | None, out: str | PathLike, chips: np.ndarray) -> int:
    """Write the int8 model of ``dat`` (default: installed) calibrated on ``chips``; return its bytes."""
    require("onnx", "train")

    from hybridface.models.dlib_format import read_dlib_net
    from hybridface.models.resnet import build_onnx, resnet_spec
    from hybridface.models.dlib_format import default_dat_path

    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (150, 150, 3) or not len(chips):
        raise ConfigError(f"calibration chips must be uint8 (n, 150, 150, 3), got {chips.dtype} {chips.shape}")
    spec = resnet_spec(read_dlib_net(dat if dat is not None else default_dat_path()))
    with tempfile.TemporaryDirectory() as tmp:
        fused = Path(tmp) / "fused.onnx"
        fused.write_bytes(build_onnx(spec, fold_affine=True).SerializeToString())
        quantize_onnx(fused, out, chips)
    return Path(out).stat().st_size


def cached_int8_path(dat: str | PathLike | None = None, *, calibration: str | PathLike | None = None,
                     n: int = CALIBRATION_FACES, cache_dir: str | PathLike | None = None) -> Path:
    """The verified cached int8 model, built first (calibrated on ``calibration``) if needed."""
    from hybridface.cache import default_cache_dir, is_verified, write_verified
    from hybridface.models.dlib_format import default_dat_path
    from hybridface.models.resnet_encoder import FORMAT_TAG

    dat = Path(dat) if dat is not None else default_dat_path()
    files = calibration_files(calibration if calibration is not None else default_calibration_dir(), n=n)
    key = hashlib.sha256("|".join(f.name for f in files).encode()).hexdigest()[:8]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{FORMAT_TAG}-{file_sha256(dat)[:16]}-int8-{key}.onnx"
    if is_verified(path):
        return path
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_resnet(dat, out, calibration_chips(files, cache_dir=cache_dir))
        data = out.read_bytes()
    write_verified(path, data)
    log.info("generated %s (%d bytes), calibrated on %d faces", path, len(data), len(files))
    return path
