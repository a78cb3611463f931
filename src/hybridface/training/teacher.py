"""Teacher descriptors for knowledge distillation, cached on disk.

The teacher is dlib's 128-D ResNet descriptor (:class:`hybridface.models.baselines.dlib_encoder.DlibEncoder`),
about 85 ms per face on one core, so every descriptor is computed once and stored as one small
``.npz`` file under ``<cache_dir>/<teacher id>/<key[:2]>/<key>.npz``. The key is the SHA-256 of
the image file's bytes plus the crop parameters (detection policy, crop size, margin), so a
renamed or copied file reuses its descriptor and a changed crop recomputes it. Each file stores
the descriptor and the SHA-256 of its bytes: a file that cannot be read, has the wrong
shape/dtype, is not finite or fails its checksum is reported (warning) and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybridface.cache import NpzCache
from hybridface.errors import ConfigError, MissingDependencyError
from hybridface.hashing import file_sha256

__all__ = ["TEACHERS", "TeacherCache", "load_teacher", "descriptor_key", "teacher_descriptors", "select_unlabeled"]

log = logging.getLogger(__name__)

#: ``dlib``: dlib's own runtime; ``resnet``: the same network ported to ONNX Runtime (no dlib needed,
#: descriptors within 1e-6 of dlib's, so both share one cache: the same teacher id)
TEACHERS = ("dlib", "resnet")
#: crop side the teacher sees (dlib landmarks and aligns a 150x150 chip from the crop)
TEACHER_CROP = 150


def load_teacher(name: str = "dlib"):
    """The teacher encoder (one of `TEACHERS`); :class:`MissingDependencyError` naming
    ``hybridface[dlib]`` when dlib (``dlib`` only) or ``face_recognition_models`` is not installed."""
    if name not in TEACHERS:
        raise ConfigError(f"unknown teacher {name!r}; use one of {', '.join(TEACHERS)}")
    if name == "resnet":
        from hybridface.models.resnet_encoder import ResNetEncoder

        return ResNetEncoder()
    try:
        from hybridface.models.baselines.dlib_encoder import DlibEncoder

        return DlibEncoder()
    except MissingDependencyError:
        raise
    except ImportError as exc:  # dlib_encoder itself failed to import one of its dependencies
        raise MissingDependencyError(
            f"the dlib teacher needs dlib and face_recognition_models; install them with: "
            f"pip install 'hybridface[dlib]' ({exc})") from exc


def descriptor_key(file_hash: str, crop: dict) -> str:
    """Cache key of one descriptor: image content hash + crop parameters."""
    return hashlib.sha256(json.dumps([file_hash, crop], sort_keys=True).encode()).hexdigest()


class TeacherCache:
    """One ``.npz`` per descriptor (``descriptor`` float32 ``(dim,)`` + ``sha256`` of its bytes),
    in a :class:`hybridface.cache.NpzCache` (sharded folder, atomic writes)."""

    def __init__(self, root: str | Path, teacher_id: str, dim: int = 128) -> None:
        self.dir = Path(root) / teacher_id.replace("/", "_")
        self.dim = int(dim)
        self._store = NpzCache(self.dir)

    @property
    def corrupt(self) -> int:
        """Files found corrupt (and removed) by this instance."""
        return self._store.corrupt

    def path(self, key: str) -> Path:
        return self._store.path(key)

    def _check(self, z: dict[str, np.ndarray]) -> str | None:
        vec = z["descriptor"]
        ok = (vec.dtype == np.float32 and vec.shape == (self.dim,) and bool(np.isfinite(vec).all())
              and hashlib.sha256(vec.tobytes()).hexdigest() == str(z["sha256"]))
        return None if ok else "shape/dtype/checksum mismatch"

    def get(self, key: str) -> np.ndarray | None:
        """The cached descriptor, or ``None`` when missing or corrupt (a corrupt file is removed)."""
        z = self._store.load(key, check=self._check, what="teacher descriptor")
        return None if z is None else z["descriptor"]

    def put(self, key: str, vec: np.ndarray) -> None:
        """Write atomically (temp file + rename)."""
        vec = np.ascontiguousarray(vec, dtype=np.float32).reshape(self.dim)
        self._store.save(key, descriptor=vec, sha256=np.array(hashlib.sha256(vec.tobytes()).hexdigest()))


def teacher_descriptors(paths: Sequence[str | Path], *, cache_dir: str | Path, detect: str = "never",
                        teacher=None, batch: int = 32, compute: bool = True,
                        progress: bool = False, name: str = "dlib") -> tuple[np.ndarray, np.ndarray]:
    """Teacher descriptors of ``paths`` → ``(descriptors (n, 128) float32, found (n,) bool)``.

    Cached ones are read; the others are computed (when ``compute``) from the file's face crop at
    150x150 (``detect`` policy, as in :func:`hybridface.faces.crop.load_crops`) and cached.
    Rows of files that cannot be read or cropped (or not computed) are zero with ``found`` False.
    ``teacher``: an encoder (default: ``load_teacher(name)``, loaded only when something is missing).
    """
    if teacher is None and name not in TEACHERS:
        raise ConfigError(f"unknown teacher {name!r}; use one of {', '.join(TEACHERS)}")
    from tqdm import tqdm

    crop = {"detect": detect, "size": TEACHER_CROP, "margin": 0.2, "teacher_input": "crop"}
    keys = [descriptor_key(file_sha256(p), crop) for p in paths]
    cache: TeacherCache | None = None
    out = np.zeros((len(paths), 128), np.float32)
    found = np.zeros(len(paths), bool)
    if teacher is not None:
        cache = TeacherCache(cache_dir, getattr(teacher, "model_id", "dlib"))
    else:  # the teacher id without loading the network: the weights file's hash
        cache = TeacherCache(cache_dir, _dlib_teacher_id())
    for i, k in enumerate(keys):
        v = cache.get(k)
        if v is not None:
            out[i], found[i] = v, True
    todo = np.flatnonzero(~found)
    if not compute or len(todo) == 0:
        return out, found
    if teacher is None:
        teacher = load_teacher(name)
    from hybridface.faces.crop import load_crops

    with tqdm(total=len(todo), desc="teacher", unit="face", disable=not progress) as bar:
        for j in range(0, len(todo), batch):
            idx = todo[j:j + batch]
            outcomes = load_crops([str(paths[i]) for i in idx], detect=detect, size=TEACHER_CROP)
            ok = [(i, o.crop.image) for i, o in zip(idx, outcomes) if o.crop is not None]
            if ok:
                vecs = teacher.encode(np.stack([im for _, im in ok]))
                for (i, _), v in zip(ok, vecs):
                    cache.put(keys[i], v)
                    out[i], found[i] = v, True
            bar.update(len(idx))
    return out, found


def _dlib_teacher_id() -> str:
    """``dlib-resnet-<sha16>`` as :class:`DlibEncoder` (and `ResNetEncoder` on the same ``.dat``)
    names itself, without loading either."""
    from hybridface.models.dlib_format import default_dat_path

    return f"dlib-resnet-{file_sha256(default_dat_path())[:16]}"


def select_unlabeled(root: str | Path, *, limit: int | None = None, seed: int = 0) -> list[Path]:
    """Image files of an unlabeled face folder (searched recursively), a seeded random subset of
    ``limit`` (the same ``(root, limit, seed)`` always gives the same files, and a larger limit
    extends a smaller one). :class:`DatasetError` when the folder is missing or holds no image."""
    from hybridface.errors import DatasetError
    from hybridface.protocols.dataset import IMAGE_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: unlabeled face folder not found")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{root}: no image files (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
    order = np.random.default_rng(seed).permutation(len(files))
    if limit is not None:
        if int(limit) < 1:
            raise ConfigError(f"unlabeled limit must be >= 1, got {limit}")
        order = order[:int(limit)]
    return [files[i] for i in order]
