"""The compressed VGGFace network of Meddad et al. (2020), Table I, in PyTorch.

Input ``(n, 3, 60, 60)`` float32; five blocks conv3x3 (stride 1, zero padding 1) → ReLU →
max-pool 2x2 stride 2 with TensorFlow 'SAME' semantics (``ceil_mode=True``), filters 8, 10, 12,
16, 20 (spatial 60 → 30 → 15 → 8 → 4 → 2); flatten 80 → FC-128 + ReLU → FC-60 (the feature,
no ReLU) → FC-``num_classes`` logits. With 15 classes: 25,713 parameters.

Only training, export and the PyTorch encoder import this module (it needs torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hybridface.errors import ModelFileError

__all__ = ["CompressedVGGFace", "FeatureHead", "CONV_CHANNELS", "FEATURE_DIM", "INPUT_SIZE", "network_from_onnx"]

CONV_CHANNELS: tuple[int, ...] = (8, 10, 12, 16, 20)
FEATURE_DIM = 60
INPUT_SIZE = 60


class CompressedVGGFace(nn.Module):
    """Paper Table I. ``forward`` returns logits; :meth:`features` the 60-D FC-60 output."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        convs = []
        c_in = 3
        for c_out in CONV_CHANNELS:
            convs.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.fc1 = nn.Linear(CONV_CHANNELS[-1] * 2 * 2, 128)
        self.fc2 = nn.Linear(128, FEATURE_DIM)
        self.fc3 = nn.Linear(FEATURE_DIM, self.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) normal weights for the ReLU layers, zero biases (trains far faster than
        PyTorch's default or the paper's truncated-normal(0.05) on so deep and thin a network)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """FC-60 activations (no ReLU, not normalised) for an ``(n, 3, 60, 60)`` batch."""
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), kernel_size=2, stride=2, ceil_mode=True)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.features(x))


class FeatureHead(nn.Module):
    """Wraps a network so ``forward`` gives the L2-normalised 60-D feature (what ONNX exports)."""

    def __init__(self, net: CompressedVGGFace) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.features(x)
        return f / torch.clamp(torch.linalg.vector_norm(f, dim=1, keepdim=True), min=1e-12)


def network_from_onnx(onnx_path: str | Path, *, num_classes: int = 1):
    """Rebuild a :class:`CompressedVGGFace` from an fp32 graph written by :func:`hybridface.training.export.build_onnx`
    (the classifier FC-K is not in the file: it is freshly initialised with ``num_classes``)."""
    import onnx
    import torch
    from onnx import numpy_helper

    try:
        w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    except Exception as exc:
        raise ModelFileError(f"{onnx_path}: not a readable ONNX file ({exc})") from exc
    net = CompressedVGGFace(num_classes)
    layers = {f"conv{i}": conv for i, conv in enumerate(net.convs, start=1)} | {"fc1": net.fc1, "fc2": net.fc2}
    with torch.no_grad():
        for name, layer in layers.items():
            for part in ("weight", "bias"):
                arr = w.get(f"{name}.{part}")
                target = getattr(layer, part)
                if arr is None or tuple(arr.shape) != tuple(target.shape):
                    raise ModelFileError(f"{onnx_path}: layer {name}.{part} is missing or has the wrong shape "
                                         f"(an fp32 hybridface export is needed)")
                target.copy_(torch.from_numpy(np.array(arr, dtype=np.float32)))
    return net.eval()
