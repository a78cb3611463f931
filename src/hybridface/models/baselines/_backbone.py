"""Shared plumbing of the baseline encoders (VGG-Face, Inception V3, the paper's weights): weight
files, seeded initialisation and a generic "torch network → L2-normalised feature" `Encoder`.

Only the baseline modules import this; it imports torch, so it is never imported by
``hybridface`` at package import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path

import numpy as np

from hybridface.hashing import file_sha256
from hybridface.errors import ModelFileError
from hybridface.models.base import ImageBatch, l2_normalize, to_uint8_batch

log = logging.getLogger(__name__)


def read_state_dict(path: str | PathLike) -> dict:
    """Read a PyTorch state dict (``.pth``/``.pt``, optionally wrapped in ``{"state_dict": ...}``)
    or a NumPy ``.npz`` whose keys are the same parameter names; strips a ``module.`` prefix."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} does not exist; pass the path of a downloaded weights file")
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                state = {k: torch.from_numpy(np.asarray(z[k])) for k in z.files}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelFileError(f"cannot read weights file {path}: {exc}; expected a PyTorch state dict or .npz") from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ModelFileError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def assign_state(
    module,
    state: Mapping,
    *,
    source: str,
    rename: Callable[[str], str | None] = lambda k: k,
) -> None:
    """Copy ``state`` into ``module`` after checking every key and shape.

    ``rename`` maps a file key to the module key, or ``None`` to skip it (e.g. a classifier head).
    Raises `ModelFileError` naming the first layer whose shape differs, or the missing layers.
    """
    import torch

    target = module.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = rename(key)
        if new is None:
            continue
        if new not in target:
            if new.endswith("num_batches_tracked"):
                continue
            raise ModelFileError(f"{source}: unexpected layer {key!r} (not part of this architecture)")
        value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(target[new].shape):
            raise ModelFileError(
                f"{source}: layer {key!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(target[new].shape)}; is this the right weights file for this model?"
            )
        mapped[new] = value.to(target[new].dtype)
    missing = [k for k in target if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelFileError(f"{source}: {len(missing)} layers missing from the weights file: {shown}")
    module.load_state_dict(mapped, strict=False)


class TorchFeatureEncoder:
    """`Encoder` over a torch network returning a feature vector per image.

    Args:
        net: ``torch.nn.Module`` mapping float32 NCHW → ``(n, dim)``.
        model_id: stable id (weights hash, or ``<name>-random-seed<s>``).
        dim: feature dimension.
        input_size: ``(h, w)`` the network takes.
        mean, scale: pixel normalisation ``(x - mean) * scale`` per RGB channel (x in 0..255).
        has_weights: False when running on random initialisation (accuracy is meaningless).
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        net,
        *,
        model_id: str,
        dim: int,
        input_size: tuple[int, int],
        mean: tuple[float, float, float],
        scale: float | tuple[float, float, float],
        has_weights: bool,
        batch_size: int = 16,
    ) -> None:
        self.net = net.eval()
        self.model_id = model_id
        self.dim = int(dim)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.scale = np.asarray(scale, np.float32).reshape(1, -1, 1, 1)
        self.has_weights = bool(has_weights)
        self.batch_size = int(batch_size)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC RGB → float32 NCHW normalised."""
        x = batch.astype(np.float32).transpose(0, 3, 1, 2)
        return np.ascontiguousarray((x - self.mean) * self.scale, dtype=np.float32)

    def encode(self, images: ImageBatch) -> np.ndarray:
        import torch

        batch = to_uint8_batch(images, self.input_size)
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(batch), self.batch_size):
                x = torch.from_numpy(self.preprocess(batch[i : i + self.batch_size]))
                outs.append(self.net(x).reshape(x.shape[0], -1).float().numpy())
        return l2_normalize(np.concatenate(outs))


def seeded_init(factory: Callable[[], object], seed: int):
    """Build a module under a fixed torch seed without disturbing the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def load_or_random(net, weights: str | PathLike | None, loader: Callable[[object, str | PathLike], None], *,
                   prefix: str, label: str, seed: int) -> str:
    """Load ``weights`` into ``net`` with ``loader``, or warn that ``net`` keeps its seeded random
    weights; return the model id (``<prefix>-<sha256[:16]>`` or ``<prefix>-random-seed<seed>``)."""
    if weights is not None:
        loader(net, weights)
        return f"{prefix}-{file_sha256(weights)[:16]}"
    log.warning("%s runs on random weights: timings are real, accuracy is not", label)
    return f"{prefix}-random-seed{seed}"
