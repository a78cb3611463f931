"""dlib's face-descriptor ResNet, ported: the format reader, the PyTorch and ONNX networks, the
cache, and descriptor parity with dlib on aligned chips from ../shared (dlib is the reference)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hybridface.errors import ConfigError, ModelFileError
from hybridface.models.dlib_format import DlibFormatError, DlibReader, parse_dlib_net, read_dlib_net

HINT = "pip install 'hybridface[dlib]'"


@pytest.fixture(scope="module")
def dat_path():
    from hybridface.models.dlib_format import default_dat_path

    try:
        p = default_dat_path()
    except ModelFileError as exc:
        pytest.skip(str(exc))
    return p


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory, dat_path):
    from hybridface.models.resnet_encoder import cached_onnx_path

    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("resnet_cache")
    cached_onnx_path(dat_path, cache_dir=root)
    return root


@pytest.fixture(scope="module")
def reference(datasets_dir):
    """100 faces from the shared datasets with dlib's chips and descriptors."""
    pytest.importorskip("dlib")
    from dlib_chips import dlib_reference, sample_files

    return dlib_reference(sample_files(datasets_dir, 100))


# ------------------------------------------------------------------ the serialization format


def test_reader_decodes_dlib_integers_floats_strings_bools():
    data = bytes([0x01, 0x02, 0x81, 0x1C, 0x02, 0x00, 0x01, 0x00,  # 2, -28, 256, 0 (size 0)
                  0x03, 0x0A, 0xD7, 0xA3, 0x81, 0x1C,              # 0.04 = 0xa3d70a * 2^-28
                  0x01, 0x03, 0x61, 0x62, 0x63, 0x31, 0x30])       # "abc", True, False
    r = DlibReader(data)
    assert [r.int(), r.int(), r.int(), r.int()] == [2, -28, 256, 0]
    assert math.isclose(r.float(), 0.04, rel_tol=1e-7)
    assert r.string() == "abc" and r.bool() is True and r.bool() is False and r.at_end
    with pytest.raises(DlibFormatError, match="truncated"):
        r.int()


def test_reader_decodes_tensors():
    vals = np.arange(6, dtype="<f4")
    data = bytes([0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x01]) + vals.tobytes()
    t = DlibReader(data).tensor()
    assert t.shape == (1, 2, 3, 1) and t.dtype == np.float32 and np.array_equal(t.ravel(), vals)


def test_parses_the_installed_network(dat_path):
    from hybridface.models.resnet import resnet_spec

    net = read_dlib_net(dat_path)
    assert net.input_size == (150, 150) and net.loss == "loss_metric_2"
    assert np.allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    assert len(net.layers) == 108 and len(net.wrapper_versions) == 130
    spec = resnet_spec(net)
    assert len(spec.blocks) == 14 and spec.fc.shape == (256, 128)
    n_params = spec.fc.size + sum(a.size for ca in [spec.stem] + [c for b in spec.blocks for c in (b.conv1, b.conv2)]
                                  for a in (ca.weight, ca.bias, ca.gamma, ca.beta))
    assert n_params == 5_614_592  # every float32 parameter of the file (22.5 MB), none dropped


@pytest.mark.parametrize("damage", ["truncated", "garbage", "appended", "empty"])
def test_damaged_file_names_the_install_command(tmp_path, dat_path, damage):
    data = dat_path.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": b"\x07" * 1000, "appended": data + b"\x01\x02",
           "empty": b""}[damage]
    p = tmp_path / "model.dat"
    p.write_bytes(bad)
    with pytest.raises(ModelFileError) as e:
        read_dlib_net(p)
    assert HINT in str(e.value) and "\n" not in str(e.value)


def test_missing_and_other_version_files_name_the_install_command(tmp_path, dat_path):
    from hybridface.models.resnet import resnet_spec
    from hybridface.models.resnet_encoder import cached_onnx_path

    with pytest.raises(ModelFileError, match=r"does not exist.*hybridface\[dlib\]"):
        cached_onnx_path(tmp_path / "nope.dat", cache_dir=tmp_path)
    # another network in the same format: the 5-point shape predictor is not a network at all
    sp = dat_path.with_name("shape_predictor_5_face_landmarks.dat")
    if sp.is_file():
        with pytest.raises(ModelFileError, match=r"hybridface\[dlib\]"):
            read_dlib_net(sp)
    # a well-formed network of another layout (the stem's filter count changed in the stream)
    net = read_dlib_net(dat_path)
    from dataclasses import replace

    other = replace(net, layers=net.layers[:4] + net.layers[8:])  # one residual block fewer
    with pytest.raises(ModelFileError, match=r"not dlib_face_recognition_resnet_model_v1.*hybridface\[dlib\]"):
        resnet_spec(other)


def test_parse_rejects_a_different_loss(dat_path):
    data = dat_path.read_bytes()
    bad = data.replace(b"loss_metric_2", b"loss_metric_9", 1)
    with pytest.raises(DlibFormatError, match="loss_metric_9"):
        parse_dlib_net(bad)


# ------------------------------------------------------------------ cache


def test_cache_is_reused_and_a_damaged_file_is_rebuilt(tmp_path, dat_path):
    pytest.importorskip("onnx")
    from hybridface.models.resnet_encoder import cached_onnx_path

    p = cached_onnx_path(dat_path, cache_dir=tmp_path)
    assert p.stat().st_size > 20_000_000 and p.with_suffix(".sha256").is_file()
    stamp = p.stat().st_mtime_ns
    assert cached_onnx_path(dat_path, cache_dir=tmp_path) == p and p.stat().st_mtime_ns == stamp
    good = p.read_bytes()
    p.write_bytes(good[: len(good) // 3])  # a partially written file under the final name
    assert cached_onnx_path(dat_path, cache_dir=tmp_path) == p
    assert p.read_bytes() == good
    assert not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------ bad chips


@pytest.mark.parametrize("chips", [
    np.zeros((2, 160, 160, 3), np.uint8), np.zeros((2, 150, 150), np.uint8), np.zeros((2, 150, 150, 4), np.uint8),
    np.zeros((2, 150, 150, 3), np.float32), [[0]],
])
def test_wrong_chip_size_or_dtype_is_a_config_error(onnx_cache, dat_path, chips):
    from hybridface.models.resnet_encoder import ResNetEncoder

    enc = ResNetEncoder(dat_path, cache_dir=onnx_cache, threads=1)
    with pytest.raises(ConfigError, match="chips must"):
        enc.descriptors(chips)


# ------------------------------------------------------------------ parity with dlib


def _check(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    return float(cos.min()), float(np.abs(ours - ref).max())


def test_onnx_descriptors_match_dlib(reference, onnx_cache, dat_path):
    from hybridface.models.resnet_encoder import ResNetEncoder

    enc = ResNetEncoder(dat_path, cache_dir=onnx_cache, threads=1)
    ours = enc.descriptors(reference["chips"])
    assert len(ours) >= 95
    cos_min, diff = _check(ours, reference["descriptors"])
    assert cos_min >= 0.9999 and diff <= 1e-3, (cos_min, diff)
    t = enc.embed_chips(reference["chips"][:3])
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)


def test_torch_port_matches_dlib(reference, dat_path):
    torch = pytest.importorskip("torch")
    from hybridface.models.resnet import build_torch, preprocess_chips, resnet_spec

    spec = resnet_spec(read_dlib_net(dat_path))
    net = build_torch(spec)
    chips = reference["chips"][:32]
    with torch.no_grad():
        ours = net(torch.from_numpy(preprocess_chips(chips, spec.mean_rgb))).numpy()
    cos_min, diff = _check(ours, reference["descriptors"][:32])
    assert cos_min >= 0.9999 and diff <= 1e-3, (cos_min, diff)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    from hybridface.cache import default_cache_dir

    monkeypatch.setenv("HYBRIDFACE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("HYBRIDFACE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "hybridface"


# ------------------------------------------------------------------ int8


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory, dat_path, dataset):
    pytest.importorskip("onnx")
    from hybridface.models.resnet_int8 import cached_int8_path

    root = tmp_path_factory.mktemp("int8_cache")
    return cached_int8_path(dat_path, calibration=dataset("unlabeled_faces/utkface"), n=32, cache_dir=root)


def test_int8_agrees_with_fp32_and_is_smaller(reference, onnx_cache, dat_path, int8_path):
    from hybridface.models.resnet_encoder import ResNetEncoder
    from hybridface.models.zoo import load_encoder

    fp32 = ResNetEncoder(dat_path, cache_dir=onnx_cache, threads=1)
    int8 = load_encoder("resnet-int8", weights=int8_path, threads=1)
    a, b = fp32.embed_chips(reference["chips"]), int8.embed_chips(reference["chips"])
    cos = (a * b).sum(1)
    assert cos.mean() >= 0.995 and cos.min() >= 0.98, (cos.mean(), cos.min())
    assert int8_path.stat().st_size < fp32.path_.stat().st_size / 3
    assert int8.model_id != fp32.model_id
    with pytest.raises(ConfigError, match="chips must"):
        int8.descriptors(np.zeros((1, 112, 112, 3), np.uint8))


def test_int8_cache_is_reused_and_verified(int8_path, dat_path, dataset):
    from hybridface.models.resnet_int8 import cached_int8_path

    stamp = int8_path.stat().st_mtime_ns
    again = cached_int8_path(dat_path, calibration=dataset("unlabeled_faces/utkface"), n=32,
                             cache_dir=int8_path.parent)
    assert again == int8_path and int8_path.stat().st_mtime_ns == stamp


def test_int8_calibration_errors(tmp_path):
    from hybridface.errors import DatasetError
    from hybridface.models.resnet_int8 import calibration_files, quantize_resnet

    with pytest.raises(DatasetError, match="no images"):
        calibration_files(tmp_path)
    with pytest.raises(ConfigError, match="calibration chips"):
        quantize_resnet(None, tmp_path / "x.onnx", np.zeros((4, 60, 60, 3), np.uint8))


def test_int8_without_calibration_faces_says_what_to_pass(monkeypatch):
    import hybridface.config
    from hybridface.models.resnet_int8 import default_calibration_dir

    monkeypatch.setattr(hybridface.config, "shared_datasets_dir", lambda: None)
    with pytest.raises(ConfigError, match="calibration=DIR"):
        default_calibration_dir()
