"""Compressing the ported dlib ResNet: stream-preserving pruning, least-squares refit, hint loss,
int8 calibration options. Tiny random networks of the same layout where the real one is not needed."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ConfigError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def spec(resnet_teacher_spec):
    return resnet_teacher_spec


def _chips(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 150, 150, 3), dtype=np.uint8)


def _ca(rng, out: int, inp: int, k: int, stride: int = 1, padding: int = 1):
    from hybridface.models.resnet import ConvAffine

    w = rng.normal(0, 1 / np.sqrt(inp * k * k), (out, inp, k, k)).astype(np.float32)
    return ConvAffine(w, rng.normal(0, 0.1, out).astype(np.float32), rng.uniform(0.5, 1.5, out).astype(np.float32),
                      rng.normal(0, 0.1, out).astype(np.float32), stride, padding)


def tiny_spec(seed: int = 0, duplicate: bool = False):
    """dlib's layout at toy width: stem 4, blocks 4 → 4 and 4 → 8 (down), fc 8 → 16.
    ``duplicate``: the second half of each block's 8 inner channels is 0.5 × the first half
    (so it carries nothing the first half does not, and ranks lower)."""
    from hybridface.models.resnet import Block, ConvAffine, ResNetSpec

    rng = np.random.default_rng(seed)
    blocks = []
    for inp, out, down in ((4, 4, False), (4, 8, True)):
        c1 = _ca(rng, 8, inp, 3, 2 if down else 1, 0 if down else 1)
        if duplicate:
            w, b, g, be = (a.copy() for a in (c1.weight, c1.bias, c1.gamma, c1.beta))
            g[:4] = 1.0  # equal scales: the halves rank cleanly (importance |γ|·‖W‖₁)
            w[4:], b[4:], g[4:], be[4:] = w[:4], b[:4], 0.5 * g[:4], 0.5 * be[:4]
            c1 = ConvAffine(w, b, g, be, c1.stride, c1.padding)
        blocks.append(Block(c1, _ca(rng, out, 8, 3), down))
    return ResNetSpec((120.0, 110.0, 100.0), _ca(rng, 4, 3, 7, 2, 0), tuple(blocks),
                      rng.normal(0, 0.3, (8, 16)).astype(np.float32))


def _run(spec, chips):
    from hybridface.models.resnet import build_torch, preprocess_chips

    with torch.no_grad():
        return build_torch(spec)(torch.from_numpy(preprocess_chips(chips, spec.mean_rgb))).numpy()


# ------------------------------------------------------------------ stream-preserving pruning


def test_stream_preserving_pruning_at_full_width_is_the_teacher_exactly(spec):
    from hybridface.training.resnet_student import prune_spec

    st = prune_spec(spec, width=1.0, stream_width=1.0)
    chips = _chips()
    assert np.array_equal(_run(spec, chips), _run(st, chips))


@pytest.mark.parametrize("width", [0.3, 0.25])
def test_stream_preserving_pruning_keeps_streams_and_counts_parameters(spec, width):
    from hybridface.training.resnet_student import count_parameters, prune_spec

    st = prune_spec(spec, width=width, stream_width=1.0)
    assert np.array_equal(st.stem.weight, spec.stem.weight) and np.array_equal(st.fc, spec.fc)
    expected = count_parameters(spec)
    for b in spec.blocks:
        c_in, c_mid, c_out = b.conv1.weight.shape[1], b.conv1.weight.shape[0], b.conv2.weight.shape[0]
        k = round(c_mid * width)
        expected -= (c_mid - k) * (9 * c_in + 3) + 9 * c_out * (c_mid - k)
    assert count_parameters(st) == expected
    for b, tb in zip(st.blocks, spec.blocks):
        assert b.conv2.weight.shape[0] == tb.conv2.weight.shape[0]
        assert b.conv1.weight.shape[1] == tb.conv1.weight.shape[1]
    # the 1.5-1.8 MB int8 budget of resnet-small: 1.4M-1.8M parameters
    assert 1_300_000 < count_parameters(st) < 1_800_000


@pytest.mark.parametrize("kw", [{"stream_width": 0.0}, {"stream_width": 1.5}, {"stream_width": float("nan")}])
def test_bad_stream_width_is_a_config_error(kw):
    from hybridface.training.resnet_student import prune_spec

    with pytest.raises(ConfigError, match="stream_width"):
        prune_spec(tiny_spec(), width=0.5, **kw)


def test_refit_recovers_channels_that_carry_a_kept_channels_signal():
    """Pruned inner channels that are 0.5 × kept ones: plain pruning loses their share of conv2,
    the least-squares refit folds it back into the kept channels' weights."""
    from hybridface.training.resnet_student import prune_spec, refit_conv2

    teacher = tiny_spec(duplicate=True)
    st = prune_spec(teacher, width=0.5, stream_width=1.0)
    rf = refit_conv2(st, teacher, _chips(6), ridge=1e-9)
    chips = _chips(4, seed=1)  # held out from the refit
    t, p, r = _run(teacher, chips), _run(st, chips), _run(rf, chips)

    def rel(a):
        return float(np.abs(a - t).max() / np.abs(t).max())

    assert rel(p) > 0.05
    assert rel(r) < 1e-3


def test_refit_needs_whole_streams():
    from hybridface.training.resnet_student import prune_spec, refit_conv2

    teacher = tiny_spec()
    with pytest.raises(ConfigError, match="stream_width=1"):
        refit_conv2(prune_spec(teacher, width=0.5), teacher, _chips(2))


# ------------------------------------------------------------------ hint loss


def test_hint_loss_is_zero_on_the_teacher_and_scale_free():
    from hybridface.training.losses import hint_loss

    g = torch.Generator().manual_seed(0)
    t = [torch.randn(4, 6, 5, 5, generator=g), torch.randn(4, 3, 2, 2, generator=g)]
    assert float(hint_loss([x.clone() for x in t], t)) == 0.0
    s = [x + 0.3 * torch.randn(x.shape, generator=g) for x in t]
    base = float(hint_loss(s, t))
    assert base > 0
    scale = [torch.linspace(0.1, 10, x.shape[1]).view(1, -1, 1, 1) for x in t]
    scaled = float(hint_loss([a * c for a, c in zip(s, scale)], [a * c for a, c in zip(t, scale)]))
    assert scaled == pytest.approx(base, rel=1e-4)


def test_hint_loss_matches_on_the_kept_channels_and_has_gradients():
    from hybridface.training.losses import hint_loss

    t = [torch.randn(2, 8, 3, 3)]
    keep = [torch.tensor([1, 4, 6])]
    s = [t[0][:, keep[0]].clone().requires_grad_(True)]
    assert float(hint_loss(s, t, keep).detach()) == 0.0
    s2 = [torch.zeros(2, 3, 3, 3, requires_grad=True)]
    hint_loss(s2, t, keep).backward()
    assert s2[0].grad is not None and float(s2[0].grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="stage 0"):
        hint_loss(s2, t)  # 3 student channels vs 8 teacher channels, no selection
    with pytest.raises(ValueError, match="one teacher map"):
        hint_loss(s2, t + t)


def test_stage_ends_and_forward_stages(spec):
    from hybridface.models.resnet import build_torch, preprocess_chips
    from hybridface.training.resnet_distill import forward_stages, stage_ends

    assert stage_ends(spec) == [2, 6, 9, 12, 13]
    tiny = tiny_spec()
    assert stage_ends(tiny) == [0, 1]
    net = build_torch(tiny)
    x = torch.from_numpy(preprocess_chips(_chips(2), tiny.mean_rgb))
    with torch.no_grad():
        out, maps = forward_stages(net, x, stage_ends(tiny))
        ref = net(x)
    assert torch.allclose(out, ref) and [m.shape[1] for m in maps] == [4, 8]


# ------------------------------------------------------------------ int8 options


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    pytest.importorskip("onnx")
    from hybridface.models.resnet import build_onnx

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    path.write_bytes(build_onnx(tiny_spec(), fold_affine=True).SerializeToString())
    return path


@pytest.mark.parametrize("per_channel, calibrate, ops", [
    (True, "minmax", "all"), (False, "minmax", "all"), (True, "percentile", "all"), (False, "entropy", "all"),
    (True, "percentile", "conv"), (False, "minmax", "conv")])
def test_quantize_onnx_options_agree_with_fp32(tmp_path, tiny_fp32, per_channel, calibrate, ops):
    import onnxruntime as ort

    from hybridface.models.resnet_int8 import quantize_onnx

    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_fp32, out, _chips(16, seed=2), per_channel=per_channel, calibrate=calibrate, ops=ops)
    chips = _chips(8, seed=3)

    def run(p):
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"chips": chips})[0]

    a, b = run(tiny_fp32), run(out)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert b.shape == (8, 16) and cos.min() > 0.95
    import onnx

    graph = onnx.load(str(out)).graph
    kinds = {n.op_type for n in graph.node}
    assert "QuantizeLinear" in kinds and "DequantizeLinear" in kinds
    # "conv": the fc (MatMul) reads a float input, no DequantizeLinear feeds it
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    fc_in = [made_by.get(i) for n in graph.node if n.op_type == "MatMul" for i in n.input]
    assert ("DequantizeLinear" in fc_in) == (ops == "all")


@pytest.mark.parametrize("kw, match", [({"calibrate": "kl"}, "calibrate"), ({"percentile": 10.0}, "percentile"),
                                       ({"ops": "everything"}, "ops")])
def test_quantize_onnx_bad_options_are_config_errors(tmp_path, tiny_fp32, kw, match):
    from hybridface.models.resnet_int8 import quantize_onnx

    with pytest.raises(ConfigError, match=match):
        quantize_onnx(tiny_fp32, tmp_path / "x.onnx", _chips(2), **kw)
    assert not (tmp_path / "x.onnx").exists()


# ------------------------------------------------------------------ distillation with hints


def test_hint_distillation_with_refit_runs_resumes_and_exports(tmp_path, dataset, monkeypatch, spec):
    pytest.importorskip("onnx")
    import json

    from hybridface.training.resnet_distill import distill
    from hybridface.models.resnet_int8 import calibration_files

    monkeypatch.setenv("HYBRIDFACE_CACHE", str(tmp_path / "cache"))
    files = calibration_files(dataset("unlabeled_faces/utkface"), n=8)
    run = tmp_path / "run"
    kw = dict(files=files, width=0.125, stream_width=1.0, refit=4, hint=1.0, steps=2, batch=4, save_every=1)
    first = distill(run, time_limit_s=0.0, **kw)
    assert first == {"step": 1, "done": False}
    with pytest.raises(ConfigError, match="new run directory"):
        distill(run, **{**kw, "hint": 0.0})
    out = distill(run, **kw)
    assert out["done"] and out["step"] == 2
    card = json.loads((run / "card.json").read_text())
    assert card["recipe"] == {"width": 0.125, "steps": 2, "stream_width": 1.0, "refit": 4, "hint": 1.0, "init": None,
                              "blocks": None, "input_side": 150, "lighting": 0.0, "pose": 0.0}
    with pytest.raises(ConfigError, match="new run directory"):  # a finished run keeps its recipe
        distill(run, **{**kw, "lighting": 0.5})
    with pytest.raises(ConfigError, match="new run directory"):
        distill(run, **{**kw, "pose": 0.5})
    with pytest.raises(ConfigError, match="lighting"):  # before any face is prepared
        distill(tmp_path / "bad", **{**kw, "lighting": 1.5})
    with pytest.raises(ConfigError, match="pose"):
        distill(tmp_path / "bad", **{**kw, "pose": -0.5})
    assert not (tmp_path / "bad").exists()
    assert card["int8"]["calibration"].startswith("percentile") and card["int8"]["quantized_ops"] == "conv"
    with pytest.raises(ConfigError, match="stream-width 1"):
        distill(tmp_path / "other", **{**kw, "stream_width": 0.5})
