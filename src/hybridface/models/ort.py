"""One way to open an ONNX Runtime CPU session for every ONNX encoder."""

from __future__ import annotations

from os import PathLike
from typing import Any

from hybridface.errors import ModelFileError


def cpu_session(path: str | PathLike, *, threads: int | None = None, hint: str = "") -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU (``threads``: intra-op threads, ``None`` = its
    default); a file ONNX Runtime cannot load is a `ModelFileError` (``hint`` appended)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFileError(f"{path}: ONNX Runtime cannot load the model ({exc}){hint}") from exc
