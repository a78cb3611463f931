"""VGG-Face descriptor (Parkhi, Vedaldi, Zisserman, BMVC 2015): VGG-16, 224x224 RGB input minus
the training set's per-channel mean, the 4096-D ``fc7`` output (after ReLU) as the template.

Weights are not shipped and cannot be downloaded here: pass the file of the publicly released
VGG-Face weights converted to a PyTorch state dict. Accepted key namings (``.pth``/``.pt``, or an
``.npz`` with the same keys; an ``fc8`` classifier head is ignored):

- ``conv1_1.weight`` … ``conv5_3.bias``, ``fc6.weight`` … ``fc7.bias`` (MatConvNet/Caffe names);
- ``conv_1_1.weight`` … (the widespread ``vgg_face_torch`` conversion);
- ``features.N.*`` / ``classifier.{0,3}.*`` (torchvision ``vgg16`` layout).

Conv weights are ``(out, in, 3, 3)``, ``fc6.weight`` is ``(4096, 25088)`` with inputs in NCHW
flatten order (channel-major). See ``docs/evaluation.md`` for converting the Caffe/Torch7 files.
"""

from __future__ import annotations

import re
from os import PathLike

from hybridface.models.baselines._backbone import (
    TorchFeatureEncoder,
    assign_state,
    load_or_random,
    read_state_dict,
    seeded_init,
)

#: Per-channel RGB mean of the VGG-Face training set (subtracted from 0..255 pixels).
VGGFACE_MEAN = (129.1863, 104.7624, 93.5940)
#: Convolutions per block of VGG-16.
_BLOCKS = (2, 2, 3, 3, 3)
#: torchvision ``vgg16`` ``features`` indices of the 13 convolutions, in order.
_TV_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV_NAMES = tuple(f"conv{b + 1}_{i + 1}" for b, n in enumerate(_BLOCKS) for i in range(n))


def build_vggface(*, width: int = 64, fc_dim: int = 4096, input_size: int = 224):
    """The VGG-16 trunk up to ``relu7``; ``width``/``fc_dim`` shrink it for tests (64/4096 = real)."""
    import torch
    from torch import nn

    class VGGFaceNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [width, 2 * width, 4 * width, 8 * width, 8 * width]
            c_in = 3
            for b, n in enumerate(_BLOCKS):
                for i in range(n):
                    setattr(self, f"conv{b + 1}_{i + 1}", nn.Conv2d(c_in, chans[b], 3, padding=1))
                    c_in = chans[b]
            spatial = input_size // 32
            self.fc6 = nn.Linear(c_in * spatial * spatial, fc_dim)
            self.fc7 = nn.Linear(fc_dim, fc_dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            k = 0
            for n in _BLOCKS:
                for _ in range(n):
                    x = torch.relu(getattr(self, CONV_NAMES[k])(x))
                    k += 1
                x = torch.nn.functional.max_pool2d(x, 2, 2)
            x = torch.relu(self.fc6(x.flatten(1)))
            return torch.relu(self.fc7(x))

    return VGGFaceNet()


def vggface_key(key: str) -> str | None:
    """Map a weights-file key to this module's key (``None`` = ignore, e.g. ``fc8``)."""
    m = re.fullmatch(r"conv_?(\d)_(\d)\.(weight|bias)", key)
    if m:
        return f"conv{m[1]}_{m[2]}.{m[3]}"
    m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
    if m and int(m[1]) in _TV_CONV_INDEX:
        return f"{CONV_NAMES[_TV_CONV_INDEX.index(int(m[1]))]}.{m[2]}"
    m = re.fullmatch(r"classifier\.(\d)\.(weight|bias)", key)
    if m:
        return {"0": f"fc6.{m[2]}", "3": f"fc7.{m[2]}"}.get(m[1])
    if re.fullmatch(r"fc8\.(weight|bias)", key):
        return None
    return key


def load_vggface_weights(net, path: str | PathLike) -> None:
    """Load a VGG-Face state dict into ``net``; `ModelFileError` names any layer of the wrong shape."""
    assign_state(net, read_state_dict(path), source=f"VGG-Face weights {path}", rename=vggface_key)


class VGGFaceEncoder(TorchFeatureEncoder):
    """VGG-Face fc7 (4096-D) `Encoder`; random weights (``has_weights=False``) when none are given."""

    def __init__(
        self,
        weights: str | PathLike | None = None,
        *,
        seed: int = 0,
        batch_size: int = 8,
        width: int = 64,
        fc_dim: int = 4096,
    ) -> None:
        net = seeded_init(lambda: build_vggface(width=width, fc_dim=fc_dim), seed)
        model_id = load_or_random(net, weights, load_vggface_weights, prefix="vggface", label="VGG-Face", seed=seed)
        super().__init__(
            net,
            model_id=model_id,
            dim=fc_dim,
            input_size=(224, 224),
            mean=VGGFACE_MEAN,
            scale=1.0,
            has_weights=weights is not None,
            batch_size=batch_size,
        )
