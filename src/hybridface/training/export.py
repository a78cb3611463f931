"""Export a trained network to one self-contained ONNX file, and int8 static quantization.

The fp32 graph is written directly with ``onnx.helper`` from the network's weights (no tracing):
input ``input`` float32 ``(n, 3, 60, 60)`` already preprocessed (see :mod:`.preprocess`), output
``embedding`` float32 ``(n, 60)`` L2-normalised. The classifier layer FC-K is not exported. The
file is byte-deterministic for given weights, so its sha256 (the model id) is stable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import ModelFileError

__all__ = ["build_onnx", "export_onnx", "quantize_int8", "export_int8", "Int8Report", "rank1", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
OPSET = 17


def _weights(net) -> dict[str, np.ndarray]:
    """float32 NumPy copies of the feature layers of a :class:`CompressedVGGFace`."""
    out: dict[str, np.ndarray] = {}
    for i, conv in enumerate(net.convs, start=1):
        out[f"conv{i}.weight"] = conv.weight.detach().cpu().numpy().astype(np.float32)
        out[f"conv{i}.bias"] = conv.bias.detach().cpu().numpy().astype(np.float32)
    for name in ("fc1", "fc2"):
        layer = getattr(net, name)
        out[f"{name}.weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        out[f"{name}.bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    return out


def build_onnx(net, *, input_size: int = 60):
    """Return an ``onnx.ModelProto`` computing the L2-normalised FC-60 feature of ``net``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _weights(net)
    inits = [numpy_helper.from_array(v, name=k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array(1e-12, dtype=np.float32), name="eps"))
    nodes = []
    x = INPUT_NAME
    n_convs = sum(1 for k in w if k.startswith("conv") and k.endswith(".weight"))
    for i in range(1, n_convs + 1):
        nodes += [
            helper.make_node("Conv", [x, f"conv{i}.weight", f"conv{i}.bias"], [f"c{i}"], kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1], strides=[1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        ]
        x = f"p{i}"
    nodes += [
        helper.make_node("Flatten", [x], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], transB=1),
        helper.make_node("Relu", ["fc1"], ["fc1r"]),
        helper.make_node("Gemm", ["fc1r", "fc2.weight", "fc2.bias"], ["feature"], transB=1),
        helper.make_node("ReduceL2", ["feature"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["norm_eps"]),
        helper.make_node("Div", ["feature", "norm_eps"], [OUTPUT_NAME]),
    ]
    dim = w["fc2.weight"].shape[0]
    graph = helper.make_graph(
        nodes, "compressed_vggface_feature",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", 3, input_size, input_size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n", dim])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hybridface")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def export_onnx(net, onnx_path: str | Path, *, input_size: int = 60) -> int:
    """Write the fp32 feature graph of ``net`` to ``onnx_path`` (one file); return its size in bytes."""
    import onnx

    path = Path(onnx_path)
    model = build_onnx(net, input_size=input_size)
    onnx.save_model(model, str(path), save_as_external_data=False)
    size = path.stat().st_size
    log.info("exported %s (%d bytes)", path, size)
    return size


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over preprocessed float32 NCHW batches."""

    def __init__(self, x: np.ndarray, batch: int = 64) -> None:
        self._it: Iterator[np.ndarray] = (x[i:i + batch] for i in range(0, len(x), batch))

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {INPUT_NAME: b}


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: np.ndarray) -> int:
    """Static int8 quantization (ONNX Runtime, QOperator, per-channel int8 weights) of an fp32 model.

    ``calibration`` is preprocessed float32 ``(n, 3, S, S)`` input. Only Conv/Gemm are quantized;
    the L2 normalisation stays float. Returns the int8 file size in bytes.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calib = np.ascontiguousarray(calibration, dtype=np.float32)
    if calib.ndim != 4 or len(calib) == 0:
        raise ModelFileError(f"calibration data must be a non-empty (n, 3, S, S) batch, got shape {calib.shape}")
    out = Path(int8_path)
    quantize_static(
        str(fp32_path), str(out), _Reader(calib),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["Conv", "Gemm", "MatMul", "MaxPool", "Relu"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    size = out.stat().st_size
    log.info("int8 model %s (%d bytes)", out, size)
    return size


def rank1(gallery: np.ndarray, gallery_ids: np.ndarray, probes: np.ndarray, probe_ids: np.ndarray) -> float:
    """Closed-set Rank-1 by plain NumPy nearest-neighbour cosine search (rows L2-normalised)."""
    if len(probes) == 0 or len(gallery) == 0:
        return float("nan")
    nearest = np.argmax(probes @ gallery.T, axis=1)
    return float(np.mean(gallery_ids[nearest] == probe_ids))


@dataclass(frozen=True)
class Int8Report:
    """Outcome of :func:`export_int8`: file sizes and Rank-1 of fp32 vs int8 on a held-out split."""

    fp32_path: Path
    int8_path: Path
    fp32_bytes: int
    int8_bytes: int
    model_id: str
    num_calibration: int
    num_gallery: int
    num_probes: int
    rank1_fp32: float
    rank1_int8: float
    skipped: int = 0

    @property
    def rank1_change(self) -> float:
        """int8 minus fp32 Rank-1, in percentage points."""
        return 100.0 * (self.rank1_int8 - self.rank1_fp32)


def _even_indices(n: int, k: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n - 1, min(k, n))).astype(int)) if n else np.empty(0, int)


def export_int8(model_dir: str | Path, calibration_dir: str | Path, *, out: str | Path | None = None,
                max_calibration: int = 300, detect: str = "never", progress: bool = False) -> Int8Report:
    """Quantize the model in ``model_dir`` with images of ``calibration_dir`` (``<identity>/<image>``).

    Calibration uses up to ``max_calibration`` evenly spaced images (labels unused). Rank-1 is
    measured on the same folder split per identity in sorted order: even positions are the gallery,
    odd positions the probes (1-NN cosine), for the fp32 and the int8 model. Writes
    ``<out>.onnx`` + ``<out>.json`` (default ``model_dir/model.int8``), with its own card.
    """
    import shutil
    import tempfile

    from hybridface.models.card import ModelCard, library_versions, load_card, sha256_file, write_card
    from hybridface.models.data import load_faces, scan_image_folder
    from hybridface.models.encoders import OnnxEncoder
    from hybridface.models.preprocess import preprocess

    fp32 = OnnxEncoder(model_dir)
    card, fp32_path = load_card(model_dir)
    target = Path(out) if out is not None else fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    if target.suffix != ".onnx":
        target = target.with_name(target.name + ".onnx")
    samples = scan_image_folder(calibration_dir)
    images, kept, errors = load_faces([p for p, _ in samples], detect=detect, size=fp32.input_size[0],
                                      progress=progress)
    ids = np.array([samples[i][1] for i in kept])
    if len(images) == 0:
        raise ModelFileError(f"no readable calibration image in {calibration_dir}")
    x = preprocess(images, fp32.spec)
    calib = x[_even_indices(len(x), max_calibration)]
    tmp = Path(tempfile.mkdtemp(prefix=".int8-", dir=target.parent))
    try:
        tmp_onnx = tmp / target.name
        size = quantize_int8(fp32_path, tmp_onnx, calib)
        int8_card = ModelCard(
            model_id=sha256_file(tmp_onnx), onnx_file=target.name, input_size=card.input_size,
            embedding_dim=card.embedding_dim, preprocessing=card.preprocessing, precision="int8",
            input_name=card.input_name, output_name=card.output_name,
            training={**card.training, "quantized_from": card.model_id,
                      "calibration": {"data": str(calibration_dir), "images": int(len(calib))}},
            versions=library_versions())
        write_card(int8_card, tmp / target.with_suffix(".json").name)
        os.replace(tmp_onnx, target)
        os.replace(tmp / target.with_suffix(".json").name, target.with_suffix(".json"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    int8 = OnnxEncoder(target)
    pos = np.zeros(len(ids), dtype=int)
    for name in np.unique(ids):
        rows = np.flatnonzero(ids == name)
        pos[rows] = np.arange(len(rows))
    g, p = pos % 2 == 0, pos % 2 == 1
    f32, i8 = fp32.encode_preprocessed(x), int8.encode_preprocessed(x)
    return Int8Report(
        fp32_path=fp32_path, int8_path=target, fp32_bytes=fp32_path.stat().st_size, int8_bytes=size,
        model_id=int8.model_id, num_calibration=int(len(calib)), num_gallery=int(g.sum()), num_probes=int(p.sum()),
        rank1_fp32=rank1(f32[g], ids[g], f32[p], ids[p]), rank1_int8=rank1(i8[g], ids[g], i8[p], ids[p]),
        skipped=len(errors))
