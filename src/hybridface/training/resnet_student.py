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

``stream_width`` (default ``width``) sets the residual streams' fraction apart from the inner
channels: ``stream_width = 1`` keeps every stream whole, in the teacher's order, so only each
block's inner channels (conv1 outputs = conv2 inputs) are pruned and the shortcut path of the
teacher survives untouched (pruning the streams too left the width-0.5 student at centred cosine
0.03 with the teacher at initialisation). `refit_conv2` then refits each pruned block's conv2 by
least squares on activations (He et al. 2017 channel pruning), so the block output is
reconstructed from the kept inner channels.

``width = 1`` is the teacher up to a permutation of channels (a test checks the descriptors).
`spec_from_torch` reads a (fine-tuned) `build_torch` module back into a `ResNetSpec`, so
`build_onnx` exports students exactly as it exports the teacher.
"""

from __future__ import annotations

import numpy as np

from hybridface.errors import ConfigError
from hybridface.models.resnet import CHIP_SIZE, Block, ConvAffine, ResNetSpec


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


def stream_channels(spec: ResNetSpec, *, stream_width: float) -> list[np.ndarray]:
    """The teacher's channel indices a student of ``stream_width`` keeps in the residual stream
    after the stem and after each block (``stream_width = 1``: all, in the teacher's order)."""
    if stream_width == 1:  # whole streams: shortcuts and fc untouched
        return [np.arange(spec.stem.weight.shape[0])] + [np.arange(b.conv2.weight.shape[0]) for b in spec.blocks]
    return _stream_sets(spec, stream_width)


def _slice(ca: ConvAffine, out_idx: np.ndarray, in_idx: np.ndarray | None) -> ConvAffine:
    w = ca.weight[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    return ConvAffine(np.ascontiguousarray(w), ca.bias[out_idx].copy(), ca.gamma[out_idx].copy(),
                      ca.beta[out_idx].copy(), ca.stride, ca.padding)


def prune_spec(spec: ResNetSpec, *, width: float, stream_width: float | None = None,
               blocks: tuple[int, ...] | None = None, input_side: int = CHIP_SIZE) -> ResNetSpec:
    """A student keeping ``width`` (0 < width ≤ 1) of each block's inner channels and
    ``stream_width`` (default ``width``) of the residual streams (stem, conv2 outputs, fc rows).

    ``blocks``: the teacher's block indices to keep (default all; every down-sampling block must
    stay, the others can go: a residual block dropped leaves its stream as it was).
    ``input_side``: the student resizes the 150x150 chip to this side first (fewer positions)."""
    if not 0 < width <= 1:
        raise ConfigError(f"width must be in (0, 1], got {width!r}")
    if stream_width is None:
        stream_width = width
    if not 0 < stream_width <= 1:
        raise ConfigError(f"stream_width must be in (0, 1], got {stream_width!r}")
    keep = check_blocks(spec, blocks)
    if not 32 <= int(input_side) <= CHIP_SIZE:
        raise ConfigError(f"input_side must be in [32, {CHIP_SIZE}], got {input_side!r}")
    streams = stream_channels(spec, stream_width=stream_width)
    stem = _slice(spec.stem, streams[0], None)
    out = []
    for i in keep:  # a stage's stream is one channel set, so block i's input is streams[i] either way
        b = spec.blocks[i]
        s_in, s_out = streams[i], streams[i + 1]
        mid = np.sort(np.argsort(-importance(b.conv1), kind="stable")[:_keep(b.conv1.weight.shape[0], width)])
        out.append(Block(_slice(b.conv1, mid, s_in), _slice(b.conv2, s_out, mid), b.down))
    return ResNetSpec(spec.mean_rgb, stem, tuple(out), np.ascontiguousarray(spec.fc[streams[-1]]),
                      input_side=int(input_side))


def check_blocks(spec: ResNetSpec, blocks: tuple[int, ...] | None) -> tuple[int, ...]:
    """The sorted teacher block indices ``blocks`` (default all); `ConfigError` unless every
    down-sampling block and the first block are kept and all indices exist."""
    n = len(spec.blocks)
    if blocks is None:
        return tuple(range(n))
    keep = tuple(sorted({int(i) for i in blocks}))
    need = [i for i, b in enumerate(spec.blocks) if b.down or i == 0]
    if not keep or keep[0] < 0 or keep[-1] >= n or any(i not in keep for i in need):
        raise ConfigError(f"blocks must be indices in 0..{n - 1} that include the first and every "
                          f"down-sampling block {need}, got {list(blocks)}")
    return keep


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
    return ResNetSpec(like.mean_rgb, ca(module.stem, like.stem), blocks, np.ascontiguousarray(fc),
                      input_side=like.input_side)


def refit_conv2(student: ResNetSpec, teacher: ResNetSpec, chips: np.ndarray, *, positions: int = 20000,
                ridge: float = 1e-3, seed: int = 0) -> ResNetSpec:
    """Refit each block's conv2 (weights + bias) of a stream-preserving student (``stream_width=1``)
    by ridge least squares: on ``chips``, the student's own kept inner activations (after its
    refitted earlier blocks) should give the teacher's conv2 output (before the affine) on the
    teacher's activations. ``positions`` spatial samples per block; blocks with all inner channels
    kept are left as they are."""
    import torch
    from torch.nn import functional as F

    from hybridface.models.resnet import build_torch, preprocess_chips

    if (student.fc.shape != teacher.fc.shape or len(student.blocks) != len(teacher.blocks)
            or student.input_side != teacher.input_side):
        raise ConfigError("refit_conv2 needs a student pruned with stream_width=1 from the same teacher")
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(preprocess_chips(np.asarray(chips), teacher.mean_rgb))
    blocks = list(student.blocks)
    with torch.no_grad():
        tnet = build_torch(teacher)
        t_in = F.max_pool2d(F.relu(tnet.stem(x)), 3, 2)
        s_in = t_in
        for i, (tb, b) in enumerate(zip(teacher.blocks, blocks)):
            tm = tnet.blocks[i]
            t_mid = F.relu(tm.conv1(t_in))
            if b.conv1.weight.shape[0] < tb.conv1.weight.shape[0]:
                target = tm.conv2.conv(t_mid)  # (n, c, h, w) conv + bias, before the affine
                snet = build_torch(ResNetSpec(student.mean_rgb, student.stem, (b,), student.fc)).blocks[0]
                s_mid = F.relu(snet.conv1(s_in))
                k = b.conv2.weight.shape[2]
                cols = F.unfold(s_mid, k, padding=b.conv2.padding)  # (n, kin*k*k, h*w)
                n, f, hw = cols.shape
                pick = rng.choice(n * hw, size=min(positions, n * hw), replace=False)
                a = cols.permute(0, 2, 1).reshape(-1, f)[pick].double().numpy()
                y = target.flatten(2).permute(0, 2, 1).reshape(n * hw, -1)[pick].double().numpy()
                a1 = np.hstack([a, np.ones((len(a), 1))])
                g = a1.T @ a1
                g[np.diag_indices(f)] += ridge * np.trace(g[:f, :f]) / f
                sol = np.linalg.solve(g, a1.T @ y)  # (f + 1, c)
                w = sol[:-1].T.reshape(b.conv2.weight.shape).astype(np.float32)
                c2 = ConvAffine(np.ascontiguousarray(w), sol[-1].astype(np.float32), b.conv2.gamma, b.conv2.beta,
                                b.conv2.stride, b.conv2.padding)
                blocks[i] = b = Block(b.conv1, c2, b.down)
            snet = build_torch(ResNetSpec(student.mean_rgb, student.stem, (b,), student.fc)).blocks[0]
            s_in, t_in = snet(s_in), tm(t_in)
    return ResNetSpec(student.mean_rgb, student.stem, tuple(blocks), student.fc, student.offset, student.input_side)


def spec_from_onnx(path, like: ResNetSpec) -> ResNetSpec:
    """Read an unfolded `build_onnx` graph (a student's ``student.onnx``) back into a spec; strides,
    paddings, down-sampling and the kept blocks come from ``like`` (the teacher, or the student's
    own `prune_spec` when it dropped blocks); the input side from the graph."""
    import onnx
    from onnx import numpy_helper

    arr = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    if "stem.g" not in arr:
        raise ConfigError(f"{path} is not an unfolded student graph (no stem.g); pass the fp32 student.onnx")

    def ca(name: str, ref: ConvAffine) -> ConvAffine:
        return ConvAffine(arr[f"{name}.w"], arr[f"{name}.b"], arr[f"{name}.g"].ravel(), arr[f"{name}.beta"].ravel(),
                          ref.stride, ref.padding)

    blocks = tuple(Block(ca(f"b{i}.1", b.conv1), ca(f"b{i}.2", b.conv2), b.down) for i, b in enumerate(like.blocks))
    side = int(arr["resize.hw"][0]) if "resize.hw" in arr else CHIP_SIZE
    return ResNetSpec(like.mean_rgb, ca("stem", like.stem), blocks, arr["fc.w"], arr.get("offset"), side)
