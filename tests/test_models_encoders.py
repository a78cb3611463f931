"""Encoders, preprocessing, model cards and int8 export on a real (randomly initialised) network."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hybridface.errors import ConfigError, ImageDecodeError, ModelFileError  # noqa: E402
from hybridface.models.base import Encoder  # noqa: E402
from hybridface.models.card import load_card, sha256_file  # noqa: E402
from hybridface.models.compressed import CompressedVGGFace  # noqa: E402
from hybridface.models.encoders import OnnxEncoder, TorchEncoder, load_model  # noqa: E402
from hybridface.training.export import quantize_int8  # noqa: E402
from hybridface.models.preprocess import PreprocessSpec, preprocess  # noqa: E402
from hybridface.training.train import write_model_dir  # noqa: E402


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return CompressedVGGFace(5).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, net):
    out = tmp_path_factory.mktemp("m") / "model"
    write_model_dir(net, out, PreprocessSpec(illumination="clahe"), {"data": "random init"})
    return out


def _faces(n, h=60, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_onnx_and_torch_encoders_agree(model_dir, net):
    onnx_enc = OnnxEncoder(model_dir, threads=1)
    torch_enc = TorchEncoder(net, onnx_enc.spec)
    assert isinstance(onnx_enc, Encoder) and isinstance(torch_enc, Encoder)
    assert onnx_enc.dim == 60 and onnx_enc.input_size == (60, 60)
    for imgs in (_faces(7), _faces(3, 97, 81, seed=1)):
        a, b = onnx_enc.encode(imgs), torch_enc.encode(imgs)
        assert a.shape == (len(imgs), 60) and a.dtype == np.float32 and a.flags.c_contiguous
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        assert (a * b).sum(1).min() >= 0.9999
    assert onnx_enc.encode(np.empty((0, 60, 60, 3), np.uint8)).shape == (0, 60)


def test_paths_are_encoded_like_arrays(model_dir, tmp_path):
    from PIL import Image

    imgs = _faces(2, seed=3)
    paths = []
    for i, im in enumerate(imgs):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    enc = OnnxEncoder(model_dir)
    assert np.allclose(enc.encode(paths), enc.encode(imgs), atol=1e-6)
    with pytest.raises(ImageDecodeError, match="nope.png"):
        enc.encode([paths[0], tmp_path / "nope.png"])


def test_preprocess_spec():
    imgs = _faces(2, 80, 70)
    x = preprocess(imgs, PreprocessSpec())
    assert x.shape == (2, 3, 60, 60) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 1], x[:, 2])  # grey -> 3 equal channels
    rgb = preprocess(imgs, PreprocessSpec(channels="rgb"))
    assert not np.array_equal(rgb[:, 0], rgb[:, 1])
    dark = (_faces(1) // 8).astype(np.uint8)
    eq = preprocess(dark, PreprocessSpec(illumination="hist_eq"))
    assert eq.max() > 0.9 > preprocess(dark).max()
    assert preprocess(imgs[:, :, :, 0]).shape == (2, 3, 60, 60)  # grey batch (n, H, W)
    with pytest.raises(ConfigError, match="illumination"):
        PreprocessSpec(illumination="retinex")


@pytest.mark.parametrize("bad", [np.zeros((2, 60, 60, 4), np.uint8), np.zeros((2, 60, 60, 3), np.float32),
                                 np.zeros((60, 60, 3), np.uint8), np.zeros((2, 1, 60, 3), np.uint8)])
def test_wrong_input_arrays_are_clear_errors(model_dir, bad):
    with pytest.raises(ConfigError):
        OnnxEncoder(model_dir).encode(bad)


def test_wrong_preprocessed_size(model_dir):
    with pytest.raises(ConfigError, match="3, 60, 60"):
        OnnxEncoder(model_dir).encode_preprocessed(np.zeros((1, 3, 64, 64), np.float32))


def test_card_records_hash_and_spec(model_dir):
    card, onnx_path = load_card(model_dir)
    assert card.model_id == sha256_file(onnx_path) and onnx_path.stat().st_size <= 110_000
    assert card.preprocessing["illumination"] == "clahe" and card.embedding_dim == 60
    assert {"numpy", "onnxruntime", "torch"} <= set(card.versions)


def test_tampered_or_missing_card(model_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[-5] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its card"):
        OnnxEncoder(bad)
    (bad / "model.json").unlink()
    with pytest.raises(ModelFileError, match="model card missing"):
        load_model(bad)
    (bad / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not readable JSON"):
        load_model(bad)
    (bad / "model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelFileError, match="not a hybridface model card"):
        load_model(bad)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "absent")


def test_int8_quantization_is_small_and_close(model_dir, tmp_path):
    enc = OnnxEncoder(model_dir)
    calib = preprocess(_faces(64, seed=5), enc.spec)
    size = quantize_int8(enc.path_, tmp_path / "q.onnx", calib)
    assert size <= 48_000
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    x = preprocess(_faces(16, seed=6), enc.spec)
    q = sess.run(None, {"input": x})[0]
    assert (q * enc.encode_preprocessed(x)).sum(1).mean() > 0.98


def test_shipped_models():
    from hybridface.models.encoders import default_model_path, shipped_model_path

    enc = load_model(None)
    path = default_model_path()
    assert enc.path_ == path == shipped_model_path("general")  # the default is the general model
    for name in ("general", "classifier"):
        p = shipped_model_path(name)
        assert p.stat().st_size <= 110_000 and p.stat().st_size + p.with_suffix(".json").stat().st_size < 200_000
        m = load_model(p)
        assert m.card_.precision == "fp32" and m.card_.embedding_dim == 60
        f = m.encode(_faces(3))
        assert f.shape == (3, 60) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    classifier = load_model(shipped_model_path("classifier")).card_
    assert classifier.training["val_accuracy"] > 0.5
    assert "gallery side" in classifier.training["data"]  # trained on protocol gallery sides only
    assert enc.card_.training["objective"]["teacher"] == "dlib"


def test_small_batches_use_a_single_threaded_twin_with_the_same_features(model_dir):
    enc = OnnxEncoder(model_dir, threads=2)
    x = np.random.default_rng(3).integers(0, 256, size=(40, 60, 60, 3), dtype=np.uint8)
    big = enc.encode(x)  # 40 > SMALL_BATCH: the 2-thread session
    assert enc._small_session is None
    small = np.concatenate([enc.encode(x[i:i + 4]) for i in range(0, 40, 4)])
    assert enc._small_session is not None and enc._small_session is not enc._session
    assert np.allclose(small, big, atol=1e-5)
    one = OnnxEncoder(model_dir, threads=1)
    one.encode(x[:2])
    assert one._small_session is None  # already single-threaded: no twin
