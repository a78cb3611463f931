"""Inception V3 (Szegedy et al., CVPR 2016): 299x299 RGB input scaled to [-1, 1], the 2048-D
global-average-pooled ``Mixed_7c`` output as the template.

The module names are those of torchvision's ``inception_v3`` (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, …), so its ImageNet checkpoint
(``inception_v3_google-*.pth``) loads directly; its ``AuxLogits.*`` and ``fc.*`` heads are
ignored. torchvision itself is not needed. The scaling ``x / 127.5 - 1`` is what torchvision's
``transform_input=True`` turns ImageNet-normalised input into for that checkpoint.
"""

from __future__ import annotations

from os import PathLike

from hybridface.models.baselines._backbone import (
    TorchFeatureEncoder,
    assign_state,
    load_or_random,
    read_state_dict,
    seeded_init,
)


def build_inception_v3(*, init: bool = True):
    """Inception V3 trunk (no auxiliary or classifier head) returning ``(n, 2048)``.

    ``init``: torchvision's truncated-normal initialisation (skip it when weights are loaded next).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, c_in: int, c_out: int, **kw) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, bias=False, **kw)
            self.bn = nn.BatchNorm2d(c_out, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def cat(*xs):
        return torch.cat(xs, 1)

    def avg3(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1)

    class InceptionA(nn.Module):
        def __init__(self, c: int, pool: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(c, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(c, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(c, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(c, pool, kernel_size=1)

        def forward(self, x):
            return cat(
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(avg3(x)),
            )

    class InceptionB(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.branch3x3 = BasicConv2d(c, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(c, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            return cat(
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            )

    class InceptionC(nn.Module):
        def __init__(self, c: int, c7: int) -> None:
            super().__init__()
            h, v = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
            self.branch1x1 = BasicConv2d(c, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(c, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, **h)
            self.branch7x7_3 = BasicConv2d(c7, 192, **v)
            self.branch7x7dbl_1 = BasicConv2d(c, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, **v)
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, **h)
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, **v)
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, **h)
            self.branch_pool = BasicConv2d(c, 192, kernel_size=1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = self.branch7x7dbl_1(x)
            for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            return cat(self.branch1x1(x), b7, d, self.branch_pool(avg3(x)))

    class InceptionD(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.branch3x3_1 = BasicConv2d(c, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(c, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b = self.branch7x7x3_1(x)
            for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
                b = layer(b)
            return cat(self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2))

    class InceptionE(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(c, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(c, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(c, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(c, 192, kernel_size=1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            return cat(
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(avg3(x)),
            )

    class Inception3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Mixed_5b = InceptionA(192, 32)
            self.Mixed_5c = InceptionA(256, 64)
            self.Mixed_5d = InceptionA(288, 64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, 128)
            self.Mixed_6c = InceptionC(768, 160)
            self.Mixed_6d = InceptionC(768, 160)
            self.Mixed_6e = InceptionC(768, 192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280)
            self.Mixed_7c = InceptionE(2048)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            for m in self.modules() if init else ():
                if isinstance(m, nn.Conv2d):
                    nn.init.trunc_normal_(m.weight, std=0.1, a=-2, b=2)

        def forward(self, x):
            for name in (
                "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
                "avgpool",
            ):  # fmt: skip
                x = getattr(self, name)(x)
            return x.flatten(1)

    return Inception3()


def inception_key(key: str) -> str | None:
    """torchvision checkpoint key → module key; the ``AuxLogits`` and ``fc`` heads are skipped."""
    if key.startswith(("AuxLogits.", "fc.")):
        return None
    return key


def load_inception_weights(net, path: str | PathLike) -> None:
    """Load a torchvision-layout Inception V3 state dict; `ModelFileError` names a bad layer."""
    assign_state(net, read_state_dict(path), source=f"Inception V3 weights {path}", rename=inception_key)


class InceptionV3Encoder(TorchFeatureEncoder):
    """Inception V3 pooled-feature (2048-D) `Encoder`; random weights when none are given."""

    def __init__(self, weights: str | PathLike | None = None, *, seed: int = 0, batch_size: int = 8) -> None:
        net = seeded_init(lambda: build_inception_v3(init=weights is None), seed)
        model_id = load_or_random(net, weights, load_inception_weights, prefix="inception_v3", label="Inception V3",
                                  seed=seed)
        super().__init__(
            net,
            model_id=model_id,
            dim=2048,
            input_size=(299, 299),
            mean=(127.5, 127.5, 127.5),
            scale=1.0 / 127.5,
            has_weights=weights is not None,
            batch_size=batch_size,
        )
