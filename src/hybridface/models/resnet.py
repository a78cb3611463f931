"""dlib's face-descriptor ResNet (``dlib_face_recognition_resnet_model_v1``): its layout, the
same network in PyTorch, and an ONNX graph built straight from the parsed weights.

The network (dlib's ``dnn_face_recognition_ex.cpp`` ``anet_type``), input side first:
150x150 RGB chip → ``(p - mean_rgb) / 256`` → conv 7x7/2 (32) → affine → ReLU → max-pool 3x3/2 →
14 residual blocks [conv 3x3/s → affine → ReLU → conv 3x3 → affine] + shortcut (2x2/2 average pool
on the down-sampling blocks) → ReLU, with channels 32 x3, 64 x4, 128 x3, 256 x3, 256 x1 → global
average pool → fc 256 → 128 without bias. Down-sampling convolutions have no padding, so at 8x8
the block gives 3x3 where the pooled shortcut gives 4x4: dlib's ``add_prev`` then zero-pads the
smaller operand at the end of each axis (channels too, 32 → 64 and 128 → 256); both ports do
the same. ``affine`` is inference batch-norm: ``gamma · x + beta`` per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridface.models.dlib_format import INSTALL_HINT, RESNET_FILE, DlibFormatError, DlibNet, Layer

#: ``(channels, stride)`` of the 14 residual blocks of the v1 model, input side first.
V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (32, 1), (32, 1), (32, 1),
    (64, 2), (64, 1), (64, 1), (64, 1),
    (128, 2), (128, 1), (128, 1),
    (256, 2), (256, 1), (256, 1),
    (256, 2),
)
CHIP_SIZE = 150
DESCRIPTOR_DIM = 128
ONNX_INPUT = "chips"          # uint8 (n, 150, 150, 3) RGB aligned chips
ONNX_OUTPUT = "descriptor"    # float32 (n, 128), dlib's raw (unnormalised) descriptor
OPSET = 17


@dataclass(frozen=True)
class ConvAffine:
    """conv (+bias) followed by the per-channel affine of a folded batch-norm."""

    weight: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray    # (out,)
    gamma: np.ndarray   # (out,)
    beta: np.ndarray    # (out,)
    stride: int
    padding: int


@dataclass(frozen=True)
class Block:
    conv1: ConvAffine
    conv2: ConvAffine
    down: bool  # shortcut through a 2x2/2 average pool


@dataclass(frozen=True)
class ResNetSpec:
    """Everything the ports need: input means, stem, blocks, the 256 → 128 projection."""

    mean_rgb: tuple[float, float, float]
    stem: ConvAffine
    blocks: tuple[Block, ...]
    fc: np.ndarray  # (256, 128): descriptor = pooled @ fc
    offset: np.ndarray | None = None  # (128,) added last (students: teacher mean - student mean)
    input_side: int = CHIP_SIZE  # side the 150x150 chip is resized to (bilinear) before the stem


def _mismatch(what: str) -> DlibFormatError:
    return DlibFormatError(f"the network is not {RESNET_FILE} ({what}); {INSTALL_HINT}")


def _conv_affine(conv: Layer, aff: Layer) -> ConvAffine:
    if conv.kind != "con_4" or aff.kind != "affine_":
        raise _mismatch(f"expected con_ + affine_, found {conv.kind} + {aff.kind}")
    nf, nr, nc, sy, sx, py, px = conv.ints
    if nr != nc or sy != sx or py != px:
        raise _mismatch(f"non-square convolution {conv.ints}")
    return ConvAffine(conv.arrays["weight"], conv.arrays["bias"], aff.arrays["gamma"], aff.arrays["beta"], sy, py)


def resnet_spec(net: DlibNet) -> ResNetSpec:
    """Check that ``net`` has the v1 face-descriptor layout and collect its weights."""
    if net.input_size != (CHIP_SIZE, CHIP_SIZE):
        raise _mismatch(f"input {net.input_size}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    L = list(net.layers)
    kinds = [layer.kind for layer in L]
    if kinds[:4] != ["con_4", "affine_", "relu_", "max_pool_2"] or L[3].ints != (3, 3, 2, 2, 0, 0):
        raise _mismatch(f"stem {kinds[:4]}")
    stem = _conv_affine(L[0], L[1])
    if stem.weight.shape != (32, 3, 7, 7) or stem.stride != 2 or stem.padding != 0:
        raise _mismatch(f"stem convolution {stem.weight.shape}")
    i, blocks = 4, []
    for channels, stride in V1_BLOCKS:
        c1, c2 = _conv_affine(L[i], L[i + 1]), None
        if kinds[i + 2] != "relu_":
            raise _mismatch(f"layer {i + 2} is {kinds[i + 2]}, expected relu_")
        c2 = _conv_affine(L[i + 3], L[i + 4])
        j = i + 5
        down = kinds[j] == "avg_pool_2"
        if down:
            if L[j].ints != (2, 2, 2, 2, 0, 0):
                raise _mismatch(f"shortcut pool {L[j].ints}")
            j += 1
        if kinds[j:j + 2] != ["add_prev_", "relu_"]:
            raise _mismatch(f"block end {kinds[j:j + 2]}")
        if (c1.weight.shape[0], c1.stride, down) != (channels, stride, stride == 2) or c2.stride != 1:
            raise _mismatch(f"block {len(blocks)}: {c1.weight.shape[0]} channels, stride {c1.stride}")
        blocks.append(Block(c1, c2, down))
        i = j + 2
    if kinds[i:] != ["avg_pool_2", "fc_2"] or L[i].ints[:2] != (0, 0):
        raise _mismatch(f"head {kinds[i:]}")
    fc = L[i + 1]
    if fc.ints[:2] != (DESCRIPTOR_DIM, 256) or "bias" in fc.arrays:
        raise _mismatch(f"fc {fc.ints}")
    return ResNetSpec(tuple(float(m) for m in net.mean_rgb), stem, tuple(blocks), fc.arrays["weight"])  # type: ignore[arg-type]


def _out(n: int, k: int, s: int, p: int) -> int:
    return 1 + (n + 2 * p - k) // s


def block_shapes(spec: ResNetSpec, size: int = CHIP_SIZE) -> list[tuple[int, int, int, int]]:
    """Per block ``(block channels, block side, shortcut channels, shortcut side)``."""
    side = _out(_out(size, spec.stem.weight.shape[2], spec.stem.stride, spec.stem.padding), 3, 2, 0)
    ch, out = spec.stem.weight.shape[0], []
    for b in spec.blocks:
        s1 = _out(side, 3, b.conv1.stride, b.conv1.padding)
        bs = _out(s1, 3, 1, b.conv2.padding)
        ss = _out(side, 2, 2, 0) if b.down else side
        bc = b.conv2.weight.shape[0]
        out.append((bc, bs, ch, ss))
        ch, side = max(bc, ch), max(bs, ss)
    return out


# ---------------------------------------------------------------------------------- PyTorch


def preprocess_chips(chips: np.ndarray, mean_rgb: tuple[float, float, float]) -> np.ndarray:
    """uint8 ``(n, 150, 150, 3)`` RGB → float32 NCHW ``(p - mean) / 256``, as dlib's input layer."""
    x = chips.astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x - np.asarray(mean_rgb, np.float32)[None, :, None, None]) / 256.0)


def build_torch(spec: ResNetSpec):
    """``torch.nn.Module`` mapping preprocessed NCHW float input to the raw 128-D descriptor."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ConvAff(nn.Module):
        def __init__(self, ca: ConvAffine) -> None:
            super().__init__()
            o, i, k, _ = ca.weight.shape
            self.conv = nn.Conv2d(i, o, k, stride=ca.stride, padding=ca.padding)
            self.conv.weight.data.copy_(torch.from_numpy(ca.weight))
            self.conv.bias.data.copy_(torch.from_numpy(ca.bias))
            self.gamma = nn.Parameter(torch.from_numpy(ca.gamma.copy()).view(1, -1, 1, 1))
            self.beta = nn.Parameter(torch.from_numpy(ca.beta.copy()).view(1, -1, 1, 1))

        def forward(self, x):
            return self.conv(x) * self.gamma + self.beta

    class ResBlock(nn.Module):
        def __init__(self, b: Block) -> None:
            super().__init__()
            self.conv1, self.conv2, self.down = ConvAff(b.conv1), ConvAff(b.conv2), b.down

        def forward(self, x):
            y = self.conv2(F.relu(self.conv1(x)))
            s = F.avg_pool2d(x, 2, 2) if self.down else x
            c, h, w = (max(a, b) for a, b in zip(y.shape[1:], s.shape[1:]))
            if y.shape[1:] != (c, h, w):
                y = F.pad(y, (0, w - y.shape[3], 0, h - y.shape[2], 0, c - y.shape[1]))
            if s.shape[1:] != (c, h, w):
                s = F.pad(s, (0, w - s.shape[3], 0, h - s.shape[2], 0, c - s.shape[1]))
            return F.relu(y + s)

    class DlibResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = ConvAff(spec.stem)
            self.blocks = nn.Sequential(*[ResBlock(b) for b in spec.blocks])
            self.fc = nn.Linear(spec.fc.shape[0], spec.fc.shape[1], bias=False)
            self.fc.weight.data.copy_(torch.from_numpy(spec.fc.T.copy()))

        def forward(self, x):
            if spec.input_side != CHIP_SIZE:  # same as the ONNX Resize (linear, half-pixel)
                x = F.interpolate(x, size=(spec.input_side,) * 2, mode="bilinear", align_corners=False)
            x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
            x = self.blocks(x)
            out = self.fc(x.mean(dim=(2, 3)))
            return out if spec.offset is None else out + torch.from_numpy(spec.offset)

    return DlibResNet().eval()


# ---------------------------------------------------------------------------------- ONNX


def build_onnx(spec: ResNetSpec, *, fold_affine: bool = False):
    """``onnx.ModelProto``: uint8 chips ``(n, 150, 150, 3)`` → raw descriptor ``(n, 128)``.

    ``fold_affine`` folds each affine into its convolution (``w·γ``, ``b·γ + β``): one op per
    layer, as int8 quantisation wants; the default keeps dlib's order of operations.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name=name))
        return name

    def conv_affine(x: str, ca: ConvAffine, name: str) -> str:
        k = ca.weight.shape[2]
        if fold_affine:
            w = (ca.weight * ca.gamma[:, None, None, None]).astype(np.float32)
            b = (ca.bias * ca.gamma + ca.beta).astype(np.float32)
            nodes.append(helper.make_node("Conv", [x, const(f"{name}.w", w), const(f"{name}.b", b)], [f"{name}.a"],
                                          kernel_shape=[k, k], strides=[ca.stride] * 2, pads=[ca.padding] * 4))
            return f"{name}.a"
        nodes.append(helper.make_node("Conv", [x, const(f"{name}.w", ca.weight), const(f"{name}.b", ca.bias)],
                                      [f"{name}.c"], kernel_shape=[k, k], strides=[ca.stride] * 2,
                                      pads=[ca.padding] * 4))
        nodes.append(helper.make_node("Mul", [f"{name}.c", const(f"{name}.g", ca.gamma.reshape(1, -1, 1, 1))],
                                      [f"{name}.m"]))
        nodes.append(helper.make_node("Add", [f"{name}.m", const(f"{name}.beta", ca.beta.reshape(1, -1, 1, 1))],
                                      [f"{name}.a"]))
        return f"{name}.a"

    def pad(x: str, have: tuple[int, int], want: tuple[int, int], name: str) -> str:
        if have == want:
            return x
        pads = np.array([0, 0, 0, 0, 0, want[0] - have[0], want[1] - have[1], want[1] - have[1]], np.int64)
        nodes.append(helper.make_node("Pad", [x, const(f"{name}.pads", pads)], [f"{name}.p"], mode="constant"))
        return f"{name}.p"

    nodes.append(helper.make_node("Cast", [ONNX_INPUT], ["xf"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]))
    nodes.append(helper.make_node("Sub", ["xt", const("mean", np.asarray(spec.mean_rgb, np.float32).reshape(1, 3, 1, 1))],
                                  ["xc"]))
    x0 = "x0"
    nodes.append(helper.make_node("Mul", ["xc", const("scale", np.array(1 / 256, np.float32))], [x0]))
    if spec.input_side != CHIP_SIZE:  # a smaller working size; the interface stays the 150x150 chip
        sizes = np.array([1, 1, spec.input_side, spec.input_side], np.int64)
        nodes.append(helper.make_node("Shape", [x0], ["x0.shape"], end=2))
        nodes.append(helper.make_node("Concat", ["x0.shape", const("resize.hw", sizes[2:])], ["resize.sizes"],
                                      axis=0))
        nodes.append(helper.make_node("Resize", [x0, "", "", "resize.sizes"], ["x0.r"], mode="linear",
                                      coordinate_transformation_mode="half_pixel"))
        x0 = "x0.r"
    s = conv_affine(x0, spec.stem, "stem")
    nodes.append(helper.make_node("Relu", [s], ["stem.r"]))
    nodes.append(helper.make_node("MaxPool", ["stem.r"], ["x"], kernel_shape=[3, 3], strides=[2, 2]))
    x = "x"
    for i, (b, (bc, bs, sc, ss)) in enumerate(zip(spec.blocks, block_shapes(spec, spec.input_side))):
        n = f"b{i}"
        y = conv_affine(x, b.conv1, f"{n}.1")
        nodes.append(helper.make_node("Relu", [y], [f"{n}.r1"]))
        y = conv_affine(f"{n}.r1", b.conv2, f"{n}.2")
        sh = x
        if b.down:
            nodes.append(helper.make_node("AveragePool", [x], [f"{n}.pool"], kernel_shape=[2, 2], strides=[2, 2]))
            sh = f"{n}.pool"
        want = (max(bc, sc), max(bs, ss))
        y, sh = pad(y, (bc, bs), want, f"{n}.py"), pad(sh, (sc, ss), want, f"{n}.ps")
        nodes.append(helper.make_node("Add", [y, sh], [f"{n}.sum"]))
        nodes.append(helper.make_node("Relu", [f"{n}.sum"], [f"{n}.out"]))
        x = f"{n}.out"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    if spec.offset is None:
        nodes.append(helper.make_node("MatMul", ["flat", const("fc.w", spec.fc)], [ONNX_OUTPUT]))
    else:
        nodes.append(helper.make_node("MatMul", ["flat", const("fc.w", spec.fc)], ["proj"], name="fc"))
        nodes.append(helper.make_node("Add", ["proj", const("offset", spec.offset.astype(np.float32))], [ONNX_OUTPUT],
                                      name="offset"))
    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_v1",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.UINT8, ["n", CHIP_SIZE, CHIP_SIZE, 3])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["n", spec.fc.shape[1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hybridface")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
