"""dlib's shape predictor (Kazemi & Sullivan 2014 regression-tree cascade), ported to NumPy.

Reads ``shape_predictor_5_face_landmarks.dat`` with our own parser of dlib's serialization
format (`hybridface.models.dlib_format`) and predicts landmarks the way dlib's
``shape_predictor::operator()`` does (``dlib/image_processing/shape_predictor.h``):

* the shape lives in box-normalised coordinates (box top-left = (0, 0), bottom-right = (1, 1));
* each of the cascades finds the similarity transform (Umeyama) from the initial shape to the
  current one, moves its feature points with it, maps them into the image, rounds them to the
  nearest pixel and reads the grey level ``(r + g + b) / 3`` (0 outside the image);
* every tree of the cascade compares two of those pixels with its split thresholds (complete
  trees, node ``i`` → ``2i + 1`` when the difference is greater, else ``2i + 2``) and adds its
  leaf's shape increment; all trees of a cascade are evaluated at once here.

By default the pixel reads, tree walk and leaf sums run in a Numba kernel
(`hybridface.models.align_kernels.cascade_step`) that gives the same bits as the NumPy code
(kept as ``compiled=False`` and as the fallback without Numba); a batch of images of one size
goes through each cascade together (the per-face similarities as one stacked LAPACK call).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, ModelFileError
from hybridface.models.dlib_format import INSTALL_HINT, DlibFormatError, DlibReader

log = logging.getLogger(__name__)

PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"


def _numba_parse():
    from numba import njit

    @njit(cache=False)
    def rint(buf, pos):
        if pos < 0 or pos >= len(buf):
            return 0, -1
        ctrl = buf[pos]
        size = ctrl & 0x0F
        if size > 8 or (ctrl & 0x70) != 0 or pos + 1 + size > len(buf):
            return 0, -1
        v = 0
        for k in range(size):
            v |= np.int64(buf[pos + 1 + k]) << (8 * k)
        if ctrl & 0x80:
            v = -v
        return v, pos + 1 + size

    @njit(cache=False)
    def rfloat(buf, pos):
        m, pos = rint(buf, pos)
        if pos < 0:
            return 0.0, -1
        e, pos = rint(buf, pos)
        if pos < 0:
            return 0.0, -1
        return np.float32(np.ldexp(np.float64(m), e)), pos

    @njit(cache=False)
    def forests(buf, pos, n_casc, n_trees, n_splits, n_leaves, dim):
        """Parse ``n_casc`` x ``n_trees`` complete trees; ``pos`` = -1 on any mismatch."""
        idx = np.zeros((n_casc, n_trees, n_splits, 2), np.int64)
        thr = np.zeros((n_casc, n_trees, n_splits), np.float32)
        leaves = np.zeros((n_casc, n_trees, n_leaves, dim), np.float32)
        for c in range(n_casc):
            if c > 0:
                v, pos = rint(buf, pos)
                if pos < 0 or v != n_trees:
                    return idx, thr, leaves, -1
            for t in range(n_trees):
                v, pos = rint(buf, pos)
                if pos < 0 or v != n_splits:
                    return idx, thr, leaves, -1
                for s in range(n_splits):
                    idx[c, t, s, 0], pos = rint(buf, pos)
                    if pos < 0:
                        return idx, thr, leaves, -1
                    idx[c, t, s, 1], pos = rint(buf, pos)
                    if pos < 0:
                        return idx, thr, leaves, -1
                    thr[c, t, s], pos = rfloat(buf, pos)
                    if pos < 0:
                        return idx, thr, leaves, -1
                v, pos = rint(buf, pos)
                if pos < 0 or v != n_leaves:
                    return idx, thr, leaves, -1
                for l in range(n_leaves):
                    nr, pos = rint(buf, pos)
                    if pos < 0:
                        return idx, thr, leaves, -1
                    nc, pos = rint(buf, pos)
                    if pos < 0 or abs(nr) * abs(nc) != dim:
                        return idx, thr, leaves, -1
                    for d in range(dim):
                        leaves[c, t, l, d], pos = rfloat(buf, pos)
                        if pos < 0:
                            return idx, thr, leaves, -1
        return idx, thr, leaves, pos

    return forests


@dataclass(frozen=True)
class ShapeModel:
    """A parsed shape predictor: arrays over (cascade, tree, node/leaf, ...)."""

    initial_shape: np.ndarray  # (parts, 2) float32, box-normalised
    split_idx: np.ndarray      # (C, T, S, 2) int64 feature indices
    split_thresh: np.ndarray   # (C, T, S) float32
    leaves: np.ndarray         # (C, T, L, parts*2) float32
    anchor_idx: np.ndarray     # (C, F) int64
    deltas: np.ndarray         # (C, F, 2) float32


def parse_shape_predictor(data: bytes, *, name: str = "<bytes>") -> ShapeModel:
    """Parse a serialized ``dlib::shape_predictor``."""
    r = DlibReader(data, name=name)
    if r.int() != 1:
        raise DlibFormatError(f"{name}: not a dlib shape_predictor (version)")
    nr, nc = abs(r.int()), abs(r.int())
    if nr * nc == 0 or nr * nc % 2 or nr * nc > 1000:
        raise DlibFormatError(f"{name}: bad initial shape {nr}x{nc}")
    init = np.array([r.float() for _ in range(nr * nc)], np.float32).reshape(-1, 2)
    dim = nr * nc
    n_casc, n_trees = r.int(), r.int()
    if not (0 < n_casc < 1000 and 0 < n_trees < 100_000):
        raise DlibFormatError(f"{name}: bad forest sizes {n_casc}x{n_trees}")
    # peek the first tree's size; the parser then checks every tree has the same shape
    save = r.pos
    n_splits = r.int()
    if not 0 < n_splits < 1 << 16:
        raise DlibFormatError(f"{name}: bad tree size {n_splits}")
    r.pos = save
    buf = np.frombuffer(data, np.uint8)
    idx, thr, leaves, pos = _numba_parse()(buf, r.pos, n_casc, n_trees, n_splits, n_splits + 1, dim)
    if pos < 0:
        raise DlibFormatError(f"{name}: the regression trees are malformed or not all complete and alike")
    r.pos = int(pos)
    if r.int() != n_casc:
        raise DlibFormatError(f"{name}: anchor table size differs from the cascade count")
    anchors = [np.array([r.int() for _ in range(r.int())], np.int64) for _ in range(n_casc)]
    if r.int() != n_casc:
        raise DlibFormatError(f"{name}: delta table size differs from the cascade count")
    deltas = []
    for _ in range(n_casc):
        n = r.int()
        deltas.append(np.array([r.float() for _ in range(2 * n)], np.float32).reshape(n, 2))
    if not r.at_end:
        raise DlibFormatError(f"{name}: {len(data) - r.pos} unexpected bytes after the shape predictor")
    nf = len(anchors[0])
    if any(len(a) != nf or len(d) != nf for a, d in zip(anchors, deltas)) or idx.max() >= nf \
            or idx.min() < 0 or max(a.max() for a in anchors) >= len(init):
        raise DlibFormatError(f"{name}: feature indices out of range")
    return ShapeModel(init, idx, thr, leaves, np.stack(anchors), np.stack(deltas))


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ A @ src + t`` (Umeyama 1991, eqs. 34-43), float64."""
    src = np.asarray(src, np.float64)
    ms = src.mean(0)
    s0 = src - ms
    a, md = _similarity_centred(s0, (s0 ** 2).sum(1).mean(), dst)
    return a, md - a @ ms


def _similarity_centred(s0: np.ndarray, var: float, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A, mean of dst)`` of `similarity` given the centred source ``s0`` and its variance ``var``.

    ``dst`` may be a stack ``(..., n, 2)``: NumPy's linalg and matmul run the same routine on each
    matrix, so every ``A`` is bit-identical to the one ``dst`` alone gives.
    """
    dst = np.asarray(dst, np.float64)
    md = np.add.reduce(dst, axis=-2) / dst.shape[-2]  # = dst.mean(-2), without its wrapper's cost
    d0 = dst - md[..., None, :]
    cov = np.swapaxes(d0, -1, -2) @ s0 / len(s0)
    u, d, vt = np.linalg.svd(cov)
    s = np.zeros(cov.shape)
    s[..., 0, 0] = s[..., 1, 1] = 1
    det = np.linalg.det(cov)
    flip = det < 0
    if (det == 0).any():
        flip |= (det == 0) & (np.linalg.det(u) * np.linalg.det(vt) < 0)
    if flip.any():
        second = d[..., 1] < d[..., 0]
        s[..., 1, 1] = np.where(flip & second, -1.0, s[..., 1, 1])
        s[..., 0, 0] = np.where(flip & ~second, -1.0, s[..., 0, 0])
    rot = u @ s @ vt
    c = (d * np.diagonal(s, axis1=-2, axis2=-1)).sum(-1) / var if var != 0 else np.ones(d.shape[:-1])
    return np.asarray(c)[..., None, None] * rot, md


def load_shape_model(path: Path, *, cache_dir: str | PathLike | None = None) -> ShapeModel:
    """Parse ``path``, or load its arrays from ``<cache>/shape-<sha256[:16]>.npz`` (hash-checked)."""
    import io

    from hybridface.hashing import file_sha256
    from hybridface.cache import default_cache_dir, is_verified, write_verified

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = root / f"shape-{file_sha256(path)[:16]}.npz"
    names = list(ShapeModel.__dataclass_fields__)
    if is_verified(cached):
        with np.load(cached) as z:
            return ShapeModel(*(z[k] for k in names))
    try:
        model = parse_shape_predictor(path.read_bytes(), name=str(path))
    except DlibFormatError as exc:
        raise DlibFormatError(f"{exc}; the file is damaged or not {PREDICTOR_FILE}; {INSTALL_HINT}") from exc
    try:
        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(model, k) for k in names})
        write_verified(cached, buf.getvalue())
    except OSError as exc:  # a read-only cache only costs the parse next time
        log.warning("could not cache the parsed shape predictor in %s: %s", root, exc)
    return model


class ShapePredictor:
    """5-point face landmarks from a face box, as dlib's ``shape_predictor`` finds them.

    Args:
        path: the predictor ``.dat`` (default: ``face_recognition_models``' 5-point model).
        cache_dir: where the parsed arrays are cached (default: the model cache).
        compiled: run the cascade with the Numba kernel (`hybridface.models.align_kernels`,
            bit-identical); ``False``, or Numba missing, runs the NumPy code.
    """

    def __init__(self, path: str | PathLike | None = None, *, cache_dir: str | PathLike | None = None,
                 compiled: bool = True) -> None:
        if path is None:
            from hybridface.models.dlib_format import default_dat_path

            path = default_dat_path().with_name(PREDICTOR_FILE)
        p = Path(path)
        if not p.is_file():
            raise ModelFileError(f"shape predictor {p} does not exist; {INSTALL_HINT}")
        self.model_ = load_shape_model(p, cache_dir=cache_dir)
        self.num_parts = len(self.model_.initial_shape)
        self.compiled = bool(compiled)
        init = np.asarray(self.model_.initial_shape, np.float64)  # `similarity`'s source terms, once
        self._init_centred = init - init.mean(0)
        self._init_var = (self._init_centred ** 2).sum(1).mean()

    def predict_one(self, image: np.ndarray, box) -> np.ndarray:
        """``(parts, 2)`` int landmarks (x, y) of the face in ``box`` = (left, top, right, bottom)."""
        from hybridface.models.align_kernels import kernel

        step = kernel("cascade_step") if self.compiled else None
        if step is None:
            return self._predict_numpy(image, box)
        img = image if image.ndim == 3 else image[:, :, None]
        return self._predict_compiled(step, img[None], 3 if image.ndim == 3 else 1,
                                      np.asarray([box], np.float64))[0]

    def _predict_compiled(self, step, images: np.ndarray, div: int, boxes: np.ndarray) -> np.ndarray:
        """`predict_one` of ``n`` faces at once: ``images`` ``(n, H, W, C)``, ``boxes`` ``(n, 4)`` float64."""
        m = self.model_
        left, top = boxes[:, 0], boxes[:, 1]
        width, height = boxes[:, 2] - left, boxes[:, 3] - top
        shapes = np.repeat(m.initial_shape.astype(np.float32)[None], len(images), axis=0)
        flat = shapes.reshape(len(images), -1)  # a view: the kernel adds the leaves in place
        feats = np.empty(m.deltas.shape[1], np.float32)
        for c in range(len(m.leaves)):
            a, _ = _similarity_centred(self._init_centred, self._init_var, shapes)
            prod = m.deltas[c] @ np.swapaxes(a.astype(np.float32), 1, 2)  # NumPy: BLAS may fuse multiply-adds
            step(images, div, left, top, width, height, prod, m.anchor_idx[c], flat,
                 m.split_idx[c], m.split_thresh[c], m.leaves[c], feats)
        origin, scale = np.stack([left, top], 1)[:, None], np.stack([width, height], 1)[:, None]
        return np.floor(origin + shapes.astype(np.float64) * scale + 0.5).astype(np.int64)

    def _predict_numpy(self, image: np.ndarray, box) -> np.ndarray:
        """`predict_one` in NumPy (the reference the compiled cascade is checked against)."""
        m = self.model_
        left, top, right, bottom = (float(v) for v in box)
        scale = np.array([right - left, bottom - top])
        origin = np.array([left, top])
        grey = image.astype(np.int32).sum(axis=2) // 3 if image.ndim == 3 else image.astype(np.int32)
        h, w = grey.shape
        init = m.initial_shape
        shape = init.astype(np.float32).copy()
        for c in range(len(m.leaves)):
            a, _ = similarity(init, shape)
            a = a.astype(np.float32)
            pts = m.deltas[c] @ a.T + shape[m.anchor_idx[c]]          # float32, normalised
            px = np.floor(origin + pts.astype(np.float64) * scale + 0.5).astype(np.int64)
            inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            feats = np.zeros(len(px), np.float32)
            feats[inside] = grey[px[inside, 1], px[inside, 0]]
            node = np.zeros(m.split_idx.shape[1], np.int64)
            trees = np.arange(len(node))
            n_splits = m.split_idx.shape[2]
            while node[0] < n_splits:  # complete trees: all reach the leaves together
                i1, i2 = m.split_idx[c, trees, node, 0], m.split_idx[c, trees, node, 1]
                go_left = (feats[i1] - feats[i2]) > m.split_thresh[c, trees, node]
                node = np.where(go_left, 2 * node + 1, 2 * node + 2)
            steps = m.leaves[c, trees, node - n_splits].reshape(len(trees), -1, 2)
            # dlib adds the leaves one by one in float32; cumsum keeps that order
            shape = np.cumsum(np.concatenate([shape[None], steps]), axis=0, dtype=np.float32)[-1]
        return np.floor(origin + shape.astype(np.float64) * scale + 0.5).astype(np.int64)

    def predict(self, images, boxes) -> np.ndarray:
        """``(n, parts, 2)`` landmarks of ``images[i]`` (uint8 RGB or grey) in ``boxes[i]``."""
        boxes = np.asarray(boxes, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != len(images):
            raise ConfigError(f"boxes must be (n, 4) (left, top, right, bottom), one per image; got {boxes.shape}")
        if not np.isfinite(boxes).all():
            raise ConfigError("boxes must be finite pixel coordinates (left, top, right, bottom); got NaN or inf")
        imgs = [np.asarray(img) for img in images]
        for img in imgs:
            if img.dtype != np.uint8 or img.ndim not in (2, 3):
                raise ConfigError(f"images must be uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
        from hybridface.models.align_kernels import kernel

        step = kernel("cascade_step") if self.compiled else None
        if step is not None and imgs and len({img.shape for img in imgs}) == 1:  # one batch, one pass
            batch = images if isinstance(images, np.ndarray) and images.ndim in (3, 4) else np.stack(imgs)
            div = 3 if batch.ndim == 4 else 1
            return self._predict_compiled(step, batch if div == 3 else batch[..., None], div, boxes)
        out = np.zeros((len(imgs), self.num_parts, 2), np.int64)
        for i, (img, box) in enumerate(zip(imgs, boxes)):
            out[i] = self.predict_one(img, box)
        return out
