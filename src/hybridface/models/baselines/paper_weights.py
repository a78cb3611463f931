"""Load the authors' published TensorFlow weights (``paper_compressed_vggface.npz``).

Layouts (see ``shared/reference/README.md``): conv kernels are TF HWIO → PyTorch OIHW
(``transpose(3, 2, 0, 1)``); FC kernels are ``(in, out)`` → ``W.T``; ``fc1/kernel`` rows follow
TF's NHWC flatten of the 2x2x20 conv5 output, so they are reordered once to NCHW order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybridface.errors import ModelFileError

__all__ = ["load_paper_arrays", "load_paper_weights", "EXPECTED_SHAPES"]

#: key → TF-layout shape of every array in the file.
EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1/kernel": (3, 3, 3, 8), "conv1/bias": (8,),
    "conv2/kernel": (3, 3, 8, 10), "conv2/bias": (10,),
    "conv3/kernel": (3, 3, 10, 12), "conv3/bias": (12,),
    "conv4/kernel": (3, 3, 12, 16), "conv4/bias": (16,),
    "conv5/kernel": (3, 3, 16, 20), "conv5/bias": (20,),
    "fc1/kernel": (80, 128), "fc1/bias": (128,),
    "fc2/kernel": (128, 60), "fc2/bias": (60,),
    "fc3/kernel": (60, 15), "fc3/bias": (15,),
}


def load_paper_arrays(npz_path: str | Path) -> dict[str, np.ndarray]:
    """Read and shape-check the ``.npz`` (TF layouts, float32); :class:`ModelFileError` if unusable."""
    path = Path(npz_path)
    if not path.is_file():
        raise ModelFileError(f"paper weights file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except Exception as exc:  # zipfile/pickle/format errors
        raise ModelFileError(f"{path} is not a readable .npz weights file ({exc})") from exc
    for key, shape in EXPECTED_SHAPES.items():
        if key not in arrays:
            raise ModelFileError(f"{path}: layer array {key!r} is missing; expected the paper's 16 arrays")
        if arrays[key].shape != shape:
            raise ModelFileError(
                f"{path}: layer {key!r} has shape {arrays[key].shape}, expected {shape} (TF layout)")
    return {k: arrays[k] for k in EXPECTED_SHAPES}


def load_paper_weights(npz_path: str | Path):
    """Return a :class:`CompressedVGGFace` (15 classes, eval mode) holding the published weights."""
    import torch

    from hybridface.models.compressed import CompressedVGGFace

    a = load_paper_arrays(npz_path)
    net = CompressedVGGFace(15)
    with torch.no_grad():
        for i, conv in enumerate(net.convs, start=1):
            conv.weight.copy_(torch.from_numpy(a[f"conv{i}/kernel"].transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(a[f"conv{i}/bias"]))
        w1 = a["fc1/kernel"].reshape(2, 2, 20, 128).transpose(3, 2, 0, 1).reshape(128, 80)
        net.fc1.weight.copy_(torch.from_numpy(np.ascontiguousarray(w1)))
        net.fc1.bias.copy_(torch.from_numpy(a["fc1/bias"]))
        for name in ("fc2", "fc3"):
            layer = getattr(net, name)
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(a[f"{name}/kernel"].T)))
            layer.bias.copy_(torch.from_numpy(a[f"{name}/bias"]))
    return net.eval()
