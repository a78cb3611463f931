"""Channel-pruned students of the ported dlib ResNet, made from the teacher's own weights.

`prune_spec` keeps a fraction ``width`` of every layer's channels, ranked by importance
``|γ| · ‖W‖₁`` of the conv + affine output (the affine scales what the conv produces):

* the residual stream of each stage (32, 64, 128, 256 channels) keeps one channel set for all its
  blocks, ranked by the summed importance of the layers writing into it; a down-sampling block's
  zero-padded shortcut adds channel ``c`` of the previous stage onto channel ``c`` of the next, so
  the next stage's kept list *starts with* the previous stage's kept channels, in the same order,
  and the student's own zero-padded shortcut stays exact;
* each block's inner channels (conv1 outputs) are ranked on their own;
* the 256 → 128 projection keeps the rows of the kept final channels.

``width = 1`` is the teacher up to a permutation of channels (a test checks the descriptors).
`spec_from_torch` reads a (fine-tuned) `build_torch` module back into a `ResNetSpec`, so
`build_onnx` exports students exactly as it exports the teacher.
"""

from __future__ import annotations

import numpy as np

from hybridface.errors import ConfigError
from hybridface.models.resnet import Block, ConvAffine, ResNetSpec


def importance(ca: ConvAffine) -> np.ndarray:
    """Per output channel ``|γ| · ‖W‖₁``."""
    return np.abs(ca.gamma) * np.abs(ca.weight).reshape(len(ca.weight), -1).sum(1)


def _keep(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def _stream_sets(spec: ResNetSpec, width: float) -> list[np.ndarray]:
    """Kept channel indices of the residual stream after the stem and after each block."""
    # group consecutive layers writing into a stream of the same size (a 256 -> 256 down block
    # continues the same stream: its shortcut maps c -> c)
    streams: list[list[ConvAffine]] = [[spec.stem]]
    sizes = [spec.stem.weight.shape[0]]
    for b in spec.blocks:
        c = b.conv2.weight.shape[0]
        if c != sizes[-1]:
            streams.append([])
            sizes.append(c)
        streams[-1].append(b.conv2)
    kept: list[np.ndarray] = []
    prev = np.zeros(0, np.int64)
    for group, size in zip(streams, sizes):
        score = sum(importance(ca) for ca in group)
        rest = [int(i) for i in np.argsort(-score, kind="stable") if i not in set(prev.tolist())]
        k = max(_keep(size, width), len(prev))
        kept.append(np.concatenate([prev, np.array(rest[:k - len(prev)], np.int64)]))
        prev = kept[-1]
    per_block, s, cur = [], 0, sizes[0]
    for b in spec.blocks:  # the same walk that built the groups
        if b.conv2.weight.shape[0] != cur:
            s, cur = s + 1, b.conv2.weight.shape[0]
        per_block.append(kept[s])
    return [kept[0], *per_block]


def _slice(ca: ConvAffine, out_idx: np.ndarray, in_idx: np.ndarray | None) -> ConvAffine:
    w = ca.weight[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    return ConvAffine(np.ascontiguousarray(w), ca.bias[out_idx].copy(), ca.gamma[out_idx].copy(),
                      ca.beta[out_idx].copy(), ca.stride, ca.padding)


def prune_spec(spec: ResNetSpec, *, width: float) -> ResNetSpec:
    """A student keeping ``width`` (0 < width ≤ 1) of the channels of every layer of ``spec``."""
    if not 0 < width <= 1:
        raise ConfigError(f"width must be in (0, 1], got {width!r}")
    streams = _stream_sets(spec, width)
    stem = _slice(spec.stem, streams[0], None)
    blocks = []
    for i, b in enumerate(spec.blocks):
        s_in, s_out = streams[i], streams[i + 1]
        mid = np.sort(np.argsort(-importance(b.conv1), kind="stable")[:_keep(b.conv1.weight.shape[0], width)])
        blocks.append(Block(_slice(b.conv1, mid, s_in), _slice(b.conv2, s_out, mid), b.down))
    return ResNetSpec(spec.mean_rgb, stem, tuple(blocks), np.ascontiguousarray(spec.fc[streams[-1]]))


def count_parameters(spec: ResNetSpec) -> int:
    convs = [spec.stem] + [c for b in spec.blocks for c in (b.conv1, b.conv2)]
    return int(spec.fc.size + sum(c.weight.size + 3 * c.bias.size for c in convs))


def spec_from_torch(module, like: ResNetSpec) -> ResNetSpec:
    """Read a `build_torch` module's (trained) weights back into a spec shaped like ``like``."""

    def ca(m, ref: ConvAffine) -> ConvAffine:
        def arr(t):
            return t.detach().cpu().numpy().astype(np.float32).copy()

        return ConvAffine(arr(m.conv.weight), arr(m.conv.bias), arr(m.gamma).ravel(), arr(m.beta).ravel(),
                          ref.stride, ref.padding)

    blocks = tuple(Block(ca(mb.conv1, b.conv1), ca(mb.conv2, b.conv2), b.down)
                   for mb, b in zip(module.blocks, like.blocks))
    fc = module.fc.weight.detach().cpu().numpy().T.astype(np.float32).copy()
    return ResNetSpec(like.mean_rgb, ca(module.stem, like.stem), blocks, np.ascontiguousarray(fc))
