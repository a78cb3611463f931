"""Channel-pruned students of the ported dlib ResNet: built from the teacher's weights, exportable."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ConfigError


@pytest.fixture(scope="module")
def spec(resnet_teacher_spec):
    return resnet_teacher_spec


def _chips(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 150, 150, 3), dtype=np.uint8)


def test_full_width_student_is_the_teacher(spec):
    torch = pytest.importorskip("torch")
    from hybridface.models.resnet import build_torch, preprocess_chips
    from hybridface.training.resnet_student import prune_spec

    x = torch.from_numpy(preprocess_chips(_chips(), spec.mean_rgb))
    with torch.no_grad():
        t = build_torch(spec)(x).numpy()
        s = build_torch(prune_spec(spec, width=1.0))(x).numpy()
    assert np.abs(t - s).max() <= 1e-4 * np.abs(t).max()


@pytest.mark.parametrize("width", [0.5, 0.25, 0.125])
def test_pruned_students_shapes_and_streams(spec, width):
    from hybridface.training.resnet_student import count_parameters, prune_spec

    st = prune_spec(spec, width=width)
    assert st.stem.weight.shape == (round(32 * width), 3, 7, 7)
    for b, tb in zip(st.blocks, spec.blocks):
        assert b.conv1.weight.shape[0] == max(1, round(tb.conv1.weight.shape[0] * width))
        assert b.conv2.weight.shape[1] == b.conv1.weight.shape[0] and b.down == tb.down
    assert st.fc.shape == (round(256 * width), 128)
    assert count_parameters(st) < count_parameters(spec) * width * width * 1.2


def test_down_sampling_shortcuts_keep_their_channels(spec):
    """The next stage's kept channels start with the previous stage's, in order (zero-padded add)."""
    from hybridface.training.resnet_student import _stream_sets

    streams = _stream_sets(spec, 0.5)
    for i, b in enumerate(spec.blocks):
        prev, cur = streams[i], streams[i + 1]
        assert np.array_equal(cur[:len(prev)], prev) or np.array_equal(cur, prev)


def test_student_exports_to_onnx_and_back(spec):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from hybridface.models.resnet import build_onnx, build_torch, preprocess_chips
    from hybridface.training.resnet_student import prune_spec, spec_from_torch

    st = prune_spec(spec, width=0.25)
    net = build_torch(st)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))  # "trained": not the teacher's values any more
        ref = net(torch.from_numpy(preprocess_chips(_chips(), st.mean_rgb))).numpy()
    for fold in (False, True):
        sess = ort.InferenceSession(build_onnx(spec_from_torch(net, st), fold_affine=fold).SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        out = sess.run(None, {"chips": _chips()})[0]
        assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("width", [0, -0.5, 1.5, float("nan")])
def test_bad_width_is_a_config_error(spec, width):
    from hybridface.training.resnet_student import prune_spec

    with pytest.raises(ConfigError, match="width"):
        prune_spec(spec, width=width)


def test_distillation_runs_resumes_and_exports(tmp_path, dataset, monkeypatch, spec):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import json

    import onnxruntime as ort

    from hybridface.training.resnet_distill import distill
    from hybridface.models.resnet_int8 import calibration_files

    monkeypatch.setenv("HYBRIDFACE_CACHE", str(tmp_path / "cache"))
    files = calibration_files(dataset("unlabeled_faces/utkface"), n=12)
    run = tmp_path / "run"
    kw = dict(files=files, width=0.125, steps=3, batch=4, save_every=1, lighting=1.0)  # every chip relit
    first = distill(run, time_limit_s=0.0, **kw)
    assert first == {"step": 1, "done": False} and (run / "ckpt.pt").is_file()
    out = distill(run, **kw)  # resumes at step 1
    assert out["done"] and out["step"] == 3
    card = json.loads((run / "card.json").read_text())
    assert card["int8"]["bytes"] < card["fp32"]["bytes"] and card["training"]["faces"] == 12
    assert card["recipe"]["lighting"] == 1.0
    for name in ("student.onnx", "student.int8.onnx"):
        sess = ort.InferenceSession(str(run / name), providers=["CPUExecutionProvider"])
        assert sess.run(None, {"chips": _chips(2)})[0].shape == (2, 128)
    with pytest.raises(ConfigError, match="new run directory"):
        distill(run, files=files, width=0.25, steps=3, batch=4)


def test_offset_is_added_by_both_ports(spec):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from dataclasses import replace

    import onnxruntime as ort

    from hybridface.models.resnet import build_onnx, build_torch, preprocess_chips
    from hybridface.training.resnet_student import prune_spec

    st = prune_spec(spec, width=0.125)
    off = np.linspace(-1, 1, 128).astype(np.float32)
    with torch.no_grad():
        base = build_torch(st)(torch.from_numpy(preprocess_chips(_chips(), st.mean_rgb))).numpy()
        shifted = build_torch(replace(st, offset=off))(torch.from_numpy(preprocess_chips(_chips(), st.mean_rgb))).numpy()
    assert np.allclose(shifted, base + off, atol=1e-5)
    sess = ort.InferenceSession(build_onnx(replace(st, offset=off)).SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.allclose(sess.run(None, {"chips": _chips()})[0], base + off, atol=1e-4)
