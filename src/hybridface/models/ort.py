"""One way to open an ONNX Runtime CPU session for every ONNX encoder."""

from __future__ import annotations

from os import PathLike
from typing import Any

from hybridface.errors import ModelFileError


#: ONNX metadata key `resnet_int8.quantize_weights` sets to ``"weights"``: int8 weights behind
#: ``DequantizeLinear``, float arithmetic; such a file is opened with ``session.disable_quant_qdq``
#: so ONNX Runtime folds the dequantisation into float constants once, at load time
WEIGHT_ONLY_KEY = "hybridface.int8"


def cpu_session(path: str | PathLike, *, threads: int | None = None, hint: str = "",
                config: dict[str, str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU (``threads``: intra-op threads, ``None`` = its
    default; ``config``: session config entries); a file ONNX Runtime cannot load is a
    `ModelFileError` (``hint`` appended)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFileError(f"{path}: ONNX Runtime cannot load the model ({exc}){hint}") from exc
