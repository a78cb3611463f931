"""The network is the paper's network: parameter count, shapes, published weights vs NumPy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hybridface.errors import ModelFileError  # noqa: E402
from hybridface.models.compressed import CompressedVGGFace  # noqa: E402
from hybridface.models.baselines.paper_weights import EXPECTED_SHAPES, load_paper_arrays, load_paper_weights  # noqa: E402


def test_parameter_count_and_shapes():
    net = CompressedVGGFace(15)
    assert sum(p.numel() for p in net.parameters()) == 25_713
    x = torch.zeros(2, 3, 60, 60)
    assert net.features(x).shape == (2, 60)
    assert net(x).shape == (2, 15)
    assert sum(p.numel() for p in CompressedVGGFace(38).parameters()) == 25_713 + 23 * 61


def _numpy_forward(a: dict[str, np.ndarray], x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain float64 NumPy re-implementation of the TF graph (NHWC, SAME conv and SAME max-pool)."""
    h = x_nhwc.astype(np.float64)
    for i in range(1, 6):
        k = a[f"conv{i}/kernel"].astype(np.float64)  # HWIO
        n, hh, ww, _ = h.shape
        p = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((n, hh, ww, k.shape[3]))
        for dy in range(3):
            for dx in range(3):
                out += p[:, dy:dy + hh, dx:dx + ww, :] @ k[dy, dx]
        out += a[f"conv{i}/bias"]
        ph, pw = -(-hh // 2), -(-ww // 2)  # SAME pooling: pad bottom/right with -inf
        q = np.full((n, ph * 2, pw * 2, out.shape[3]), -np.inf)
        q[:, :hh, :ww] = out
        h = np.maximum(q.reshape(n, ph, 2, pw, 2, -1).max(axis=(2, 4)), 0.0)
    flat = h.reshape(len(h), -1)  # NHWC flatten order, as TF
    fc1 = np.maximum(flat @ a["fc1/kernel"] + a["fc1/bias"], 0.0)
    feat = fc1 @ a["fc2/kernel"] + a["fc2/bias"]
    return feat, feat @ a["fc3/kernel"] + a["fc3/bias"]


def test_published_weights_match_numpy_reference(reference_npz):
    arrays = load_paper_arrays(reference_npz)
    net = load_paper_weights(reference_npz)
    rng = np.random.default_rng(0)
    x = rng.random((6, 60, 60, 3)).astype(np.float32)
    want_feat, want_logits = _numpy_forward(arrays, x)
    with torch.no_grad():
        t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        feat, logits = net.features(t).numpy(), net(t).numpy()
    assert np.abs(feat - want_feat).max() < 1e-4
    assert np.abs(logits - want_logits).max() < 1e-4
    assert np.abs(want_feat).max() > 1.0  # a non-trivial comparison


def test_wrong_shaped_weights_file_names_the_layer(tmp_path):
    arrays = {k: np.zeros(s, np.float32) for k, s in EXPECTED_SHAPES.items()}
    arrays["conv3/kernel"] = np.zeros((3, 3, 12, 10), np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ModelFileError, match="conv3/kernel"):
        load_paper_weights(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="junk.npz"):
        load_paper_arrays(tmp_path / "junk.npz")
    with pytest.raises(ModelFileError, match="missing.npz"):
        load_paper_arrays(tmp_path / "missing.npz")


def test_lazy_package_exports():
    import hybridface.models as m

    assert m.CompressedVGGFace is CompressedVGGFace
    with pytest.raises(AttributeError):
        m.NoSuchThing  # noqa: B018
