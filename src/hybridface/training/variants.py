"""Architecture variants of the compressed network under the same API (60x60 in, 60-D out).

* ``paper`` — :class:`hybridface.models.compressed.CompressedVGGFace` (Table I, filters 8-10-12-16-20).
* ``wide`` — the same five conv3x3/ReLU/max-pool blocks with twice the filters (16-20-24-32-40),
  FC-128, FC-60: about 55K parameters of feature layers.

:class:`BatchNormTrainer` wraps any of them for training only: a BatchNorm after every conv
(before its ReLU), folded into the conv weights at the end (:meth:`BatchNormTrainer.fold`), so the
exported network is exactly the unwrapped architecture (no extra layer, same ONNX graph).

Every variant has the attributes the ONNX exporter reads (``convs``, ``fc1``, ``fc2``) and
``features(x)``, so :func:`hybridface.training.export.export_onnx` writes it unchanged.
Only training imports this module (it needs torch).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hybridface.errors import ConfigError

__all__ = ["ARCHITECTURES", "BatchNormTrainer", "ConvNet", "build_network", "feature_parameters"]

ARCHITECTURES: dict[str, tuple[int, ...]] = {"paper": (8, 10, 12, 16, 20), "wide": (16, 20, 24, 32, 40)}


class ConvNet(nn.Module):
    """Five conv blocks with ``channels`` filters → FC-128 → FC-60 feature → FC-``num_classes``."""

    def __init__(self, channels: tuple[int, ...], num_classes: int = 1, *, feature_dim: int = 60) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.num_classes = int(num_classes)
        c_in, convs = 3, []
        for c in self.channels:
            convs.append(nn.Conv2d(c_in, c, kernel_size=3, stride=1, padding=1))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.fc1 = nn.Linear(c_in * 2 * 2, 128)
        self.fc2 = nn.Linear(128, feature_dim)
        self.fc3 = nn.Linear(feature_dim, self.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def features(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), kernel_size=2, stride=2, ceil_mode=True)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

    def forward(self, x):
        return self.fc3(self.features(x))


def build_network(arch: str = "paper", num_classes: int = 1) -> nn.Module:
    """``paper`` → the exact :class:`CompressedVGGFace`; ``wide`` → :class:`ConvNet` with doubled filters."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    if arch == "paper":
        from hybridface.models.compressed import CompressedVGGFace

        return CompressedVGGFace(num_classes)
    return ConvNet(ARCHITECTURES[arch], num_classes)


def feature_parameters(net: nn.Module) -> int:
    """Parameters of the exported layers (convs, FC-128, FC-60; the classifier is not exported)."""
    return sum(p.numel() for name, p in net.named_parameters() if not name.startswith("fc3"))


class BatchNormTrainer(nn.Module):
    """Training-time wrapper of a variant: ``conv → BatchNorm → ReLU → max-pool`` per block.

    :meth:`fold` writes each BatchNorm (running statistics, eval mode) into its conv's weights and
    bias and returns the plain network, whose ``features`` then equal this wrapper's in eval mode.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.bns = nn.ModuleList(nn.BatchNorm2d(conv.out_channels) for conv in net.convs)

    @property
    def fc2(self) -> nn.Linear:
        return self.net.fc2

    @property
    def fc3(self) -> nn.Linear:
        return self.net.fc3

    def features(self, x):
        for conv, bn in zip(self.net.convs, self.bns):
            x = F.max_pool2d(F.relu(bn(conv(x))), kernel_size=2, stride=2, ceil_mode=True)
        return self.net.fc2(F.relu(self.net.fc1(x.flatten(1))))

    def forward(self, x):
        return self.net.fc3(self.features(x))

    @torch.no_grad()
    def fold(self) -> nn.Module:
        """The wrapped network with every BatchNorm folded into its conv (call once, after training)."""
        for conv, bn in zip(self.net.convs, self.bns):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale[:, None, None, None])
            conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
        self.net.eval()
        return self.net
