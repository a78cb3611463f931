"""A reader of dlib's serialization format, and the parser of its face-descriptor ResNet file.

Written from the format as dlib's headers document it (``dlib/serialize.h``,
``dlib/dnn/{core,layers,tensor}.h``); no dlib code is used or needed.

Encodings (all little-endian):

* integer: one control byte — low nibble = number of value bytes that follow, bit 7 = negative —
  then the magnitude, least significant byte first;
* float/double: two integers, mantissa and exponent, value = mantissa · 2^exponent;
* string: integer length, then the bytes;  bool: one ASCII byte ``'0'`` or ``'1'``;
* dnn ``tensor`` (version 2): num_samples, k, nr, nc, then raw IEEE float32 values;
* dnn ``alias_tensor`` (version 1): num_samples, k, nr, nc (a view into a layer's params).

A network is stored outside-in: ``add_loss_layer`` writes its version and loss details, then
every wrapper (``add_layer``, tag, skip) writes its version and recurses into its subnetwork, so
the stream holds all wrapper versions first, then the input layer, then each computational
layer's details from the input side to the output side (tags and skips write nothing more).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from hybridface.errors import MissingDependencyError, ModelFileError

#: What to do when the model file is missing or unusable.
INSTALL_HINT = "reinstall it with: pip install 'hybridface[dlib]'"
#: The file this parser knows: ``face_recognition_models``' descriptor network.
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class DlibFormatError(ModelFileError):
    """A dlib ``.dat`` stream ends early or holds something other than what was expected."""


class DlibReader:
    """Sequential reader of dlib-serialized values from a bytes buffer."""

    def __init__(self, data: bytes, *, name: str = "<bytes>") -> None:
        self._buf = memoryview(data)
        self.pos = 0
        self.name = name

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self._buf):
            raise DlibFormatError(f"{self.name}: truncated at byte {self.pos} (wanted {n} more bytes)")
        out = self._buf[self.pos:self.pos + n]
        self.pos += n
        return out

    @property
    def at_end(self) -> bool:
        return self.pos == len(self._buf)

    def int(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size > 8 or ctrl & 0x70:
            raise DlibFormatError(f"{self.name}: bad integer control byte 0x{ctrl:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise DlibFormatError(f"{self.name}: bad string length {n} at byte {self.pos}")
        return bytes(self._take(n)).decode("latin-1")

    def bool(self) -> bool:
        c = self._take(1)[0]
        if c not in (0x30, 0x31):
            raise DlibFormatError(f"{self.name}: bad bool byte 0x{c:02x} at byte {self.pos - 1}")
        return c == 0x31

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"{self.name}: tensor version {version} (expected 2) at byte {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"{self.name}: negative tensor shape {shape}")
        n = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * n)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"{self.name}: alias_tensor version {version} (expected 1)")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class Layer:
    """One computational layer of a dlib network: its type tag, integer settings and arrays."""

    kind: str
    ints: tuple[int, ...] = ()
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _read_layer(r: DlibReader) -> Layer:
    kind = r.string()
    if kind == "con_4":
        params = r.tensor().ravel()
        nf, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
        fshape, bshape = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        nw = int(np.prod(fshape))
        if params.size != nw + nf or fshape != (nf, fshape[1], nr, nc) or bshape[1] != nf:
            raise DlibFormatError(f"{r.name}: inconsistent con_ layer shapes {fshape} / {bshape} / {params.size}")
        return Layer(kind, (nf, nr, nc, sy, sx, py, px),
                     {"weight": params[:nw].reshape(fshape), "bias": params[nw:].copy()})
    if kind == "affine_":
        params = r.tensor().ravel()
        g, b = r.alias_tensor(), r.alias_tensor()
        r.int()  # mode (CONV_MODE / FC_MODE): per channel either way for these shapes
        c = int(np.prod(g))
        if params.size != 2 * c or int(np.prod(b)) != c:
            raise DlibFormatError(f"{r.name}: inconsistent affine_ layer shapes {g} / {b} / {params.size}")
        return Layer(kind, (c,), {"gamma": params[:c].copy(), "beta": params[c:].copy()})
    if kind in ("relu_", "add_prev_"):
        return Layer(kind)
    if kind in ("max_pool_2", "avg_pool_2"):
        return Layer(kind, tuple(r.int() for _ in range(6)))
    if kind == "fc_2":
        n_out, n_in = r.int(), r.int()
        params = r.tensor().ravel()
        wshape, _ = r.alias_tensor(), r.alias_tensor()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if wshape[:2] != (n_in, n_out) or params.size < n_in * n_out:
            raise DlibFormatError(f"{r.name}: inconsistent fc_ layer shapes {wshape} / {params.size}")
        arrays = {"weight": params[:n_in * n_out].reshape(n_in, n_out)}
        if bias_mode == 0 and params.size == n_in * n_out + n_out:  # FC_HAS_BIAS
            arrays["bias"] = params[n_in * n_out:].copy()
        return Layer(kind, (n_out, n_in, bias_mode), arrays)
    raise DlibFormatError(f"{r.name}: unsupported layer type {kind!r} at byte {r.pos}")


@dataclass(frozen=True)
class DlibNet:
    """A parsed dlib metric-learning network: input means, computational layers, loss settings."""

    input_kind: str
    input_size: tuple[int, int]
    mean_rgb: tuple[float, float, float]
    layers: tuple[Layer, ...]
    wrapper_versions: tuple[int, ...]
    loss: str
    margin: float
    distance_threshold: float


def parse_dlib_net(data: bytes, *, name: str = "<bytes>") -> DlibNet:
    """Parse a serialized ``loss_metric`` network with an ``input_rgb_image_sized`` input."""
    r = DlibReader(data, name=name)
    if r.int() != 1:
        raise DlibFormatError(f"{name}: not a dlib add_loss_layer stream (version byte)")
    loss = r.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"{name}: loss {loss!r}, expected 'loss_metric_2'")
    margin, thresh = r.float(), r.float()
    versions = []
    while True:  # wrapper versions outside-in; the innermost add_layer (on the input) is version 3
        v = r.int()
        versions.append(v)
        if v == 3:
            break
        if v not in (1, 2) or len(versions) > 10_000:
            raise DlibFormatError(f"{name}: unexpected layer wrapper version {v} at byte {r.pos}")
    input_kind = r.string()
    if input_kind != "input_rgb_image_sized":
        raise DlibFormatError(f"{name}: input layer {input_kind!r}, expected 'input_rgb_image_sized'")
    mean = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers = []
    for i, v in enumerate(reversed([v for v in versions if v != 1])):
        layers.append(_read_layer(r))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output getters disabled
            r.bool()
        for _ in range(3):  # x_grad, cached_output, params_grad (grad_final for the innermost)
            r.tensor()
        if i == 0:
            r.int()  # _sample_expansion_factor
    if not r.at_end:
        raise DlibFormatError(f"{name}: {len(data) - r.pos} unexpected bytes after the network")
    return DlibNet(input_kind, size, mean, tuple(layers), tuple(versions), loss, margin, thresh)


def read_dlib_net(path: str | PathLike) -> DlibNet:
    """Read and parse a network ``.dat``; `ModelFileError` (naming the install command) if unusable."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"dlib model file {p} does not exist; {INSTALL_HINT}")
    try:
        return parse_dlib_net(p.read_bytes(), name=str(p))
    except DlibFormatError as exc:
        raise DlibFormatError(f"{exc}; the file is damaged or not {RESNET_FILE}; {INSTALL_HINT}") from exc


def default_dat_path() -> Path:
    """Where ``face_recognition_models`` keeps the descriptor network (without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"face_recognition_models is not installed, so {RESNET_FILE} is missing; {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / RESNET_FILE
