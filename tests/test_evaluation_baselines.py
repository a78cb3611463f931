"""Baseline encoders (VGG-Face, Inception V3, dlib, paper) and the model zoo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridface.errors import ConfigError, ModelFileError
from hybridface.models.zoo import has_weights, load_encoder

RNG = np.random.default_rng(0)


def _faces(n: int, size: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------- VGG-Face
def _tiny_vgg_state(seed: int = 1):
    from hybridface.models.baselines.vggface import build_vggface

    torch.manual_seed(seed)
    net = build_vggface(width=4, fc_dim=32).eval()
    return net, net.state_dict()


def test_vggface_loads_matconvnet_style_names_and_ignores_fc8(tmp_path):
    from hybridface.models.baselines.vggface import VGGFaceEncoder

    net, state = _tiny_vgg_state()
    # the common "conv_1_1" naming of converted files, plus a classifier head to ignore
    renamed = {k.replace("conv", "conv_", 1): v for k, v in state.items()}
    renamed["fc8.weight"] = torch.zeros(2622, 32)
    renamed["fc8.bias"] = torch.zeros(2622)
    path = tmp_path / "vgg_face.pth"
    torch.save(renamed, path)
    enc = VGGFaceEncoder(path, width=4, fc_dim=32)
    assert enc.has_weights and enc.dim == 32 and enc.input_size == (224, 224)
    imgs = _faces(3, 224)
    with torch.no_grad():
        ref = net(torch.from_numpy(enc.preprocess(imgs))).numpy()
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(enc.encode(imgs), ref, atol=1e-5)
    # a random encoder of the same architecture gives different templates
    assert not np.allclose(VGGFaceEncoder(None, width=4, fc_dim=32, seed=5).encode(imgs), ref, atol=1e-3)


def test_vggface_torchvision_layout_and_npz(tmp_path):
    from hybridface.models.baselines.vggface import CONV_NAMES, VGGFaceEncoder, _TV_CONV_INDEX

    _, state = _tiny_vgg_state()
    tv = {}
    for i, name in zip(_TV_CONV_INDEX, CONV_NAMES):
        tv[f"features.{i}.weight"] = state[f"{name}.weight"]
        tv[f"features.{i}.bias"] = state[f"{name}.bias"]
    for idx, name in (("0", "fc6"), ("3", "fc7")):
        tv[f"classifier.{idx}.weight"] = state[f"{name}.weight"]
        tv[f"classifier.{idx}.bias"] = state[f"{name}.bias"]
    torch.save({"state_dict": tv}, tmp_path / "tv.pt")
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in state.items()})
    imgs = _faces(2, 100)
    direct = VGGFaceEncoder(None, width=4, fc_dim=32)
    direct.net.load_state_dict(state)
    ref = direct.encode(imgs)
    for name in ("tv.pt", "w.npz"):
        enc = VGGFaceEncoder(tmp_path / name, width=4, fc_dim=32)
        assert enc.has_weights
        np.testing.assert_allclose(enc.encode(imgs), ref, atol=1e-6)


def test_vggface_wrong_shape_names_the_layer(tmp_path):
    from hybridface.models.baselines.vggface import VGGFaceEncoder

    _, state = _tiny_vgg_state()
    state["fc7.weight"] = torch.zeros(16, 32)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelFileError, match="fc7.weight"):
        VGGFaceEncoder(tmp_path / "bad.pth", width=4, fc_dim=32)
    _, state = _tiny_vgg_state()
    del state["conv3_2.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ModelFileError, match="conv3_2.weight"):
        VGGFaceEncoder(tmp_path / "missing.pth", width=4, fc_dim=32)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="garbage.pth"):
        VGGFaceEncoder(tmp_path / "garbage.pth", width=4, fc_dim=32)
    with pytest.raises(ModelFileError, match="does not exist"):
        VGGFaceEncoder(tmp_path / "absent.pth", width=4, fc_dim=32)


# ---------------------------------------------------------------- Inception V3
@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    from hybridface.models.baselines.inception import build_inception_v3

    torch.manual_seed(3)
    net = build_inception_v3().eval()
    state = dict(net.state_dict())
    # what torchvision's checkpoint also holds: the auxiliary and ImageNet heads
    state["AuxLogits.conv0.conv.weight"] = torch.zeros(128, 768, 1, 1)
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("inc") / "inception_v3_google.pth"
    torch.save(state, path)
    return net, path


def test_inception_loads_torchvision_checkpoint_layout(inception_file):
    from hybridface.models.baselines.inception import InceptionV3Encoder

    net, path = inception_file
    enc = InceptionV3Encoder(path)
    assert enc.has_weights and enc.dim == 2048 and enc.input_size == (299, 299)
    enc.input_size = (107, 107)  # the architecture accepts >= 75 px; keeps this test light
    imgs = _faces(2, 107)
    with torch.no_grad():
        ref = net(torch.from_numpy(enc.preprocess(imgs))).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    out = enc.encode(imgs)
    assert out.shape == (2, 2048) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in net.state_dict()


def test_inception_wrong_shape_names_the_layer(inception_file, tmp_path):
    from hybridface.models.baselines.inception import InceptionV3Encoder

    _, path = inception_file
    state = torch.load(path, weights_only=True)
    state["Mixed_6b.branch7x7_2.conv.weight"] = torch.zeros(128, 128, 7, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelFileError, match="Mixed_6b.branch7x7_2.conv.weight"):
        InceptionV3Encoder(tmp_path / "bad.pth")


# ---------------------------------------------------------------- dlib, paper, zoo
def test_dlib_descriptor_separates_people(dataset):
    from hybridface.faces.io import load_image

    root = dataset("att_orl")
    people = sorted(p for p in root.iterdir() if p.is_dir())[:2]
    paths = [sorted(p.iterdir())[i] for p in people for i in (0, 1)]
    enc = load_encoder("dlib")
    f = enc.encode(np.stack([load_image(p) for p in paths]) if len({load_image(p).shape for p in paths}) == 1 else paths)
    assert f.shape == (4, 128) and enc.has_weights
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    sim = f @ f.T
    assert min(sim[0, 1], sim[2, 3]) > max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3])


def test_dlib_bad_model_file(tmp_path):
    (tmp_path / "x.dat").write_bytes(b"nope")
    with pytest.raises(ModelFileError, match="x.dat"):
        load_encoder("dlib", weights=tmp_path / "x.dat")


def test_paper_encoder_uses_reference_weights(reference_npz):
    enc = load_encoder("paper", weights=reference_npz)
    f = enc.encode(_faces(3, 60))
    assert f.shape == (3, 60) and has_weights(enc) and enc.model_id.startswith("paper-b21fea17")


def test_paper_encoder_rejects_wrong_shapes(tmp_path):
    np.savez(tmp_path / "bad.npz", **{"conv1/kernel": np.zeros((3, 3, 3, 9), np.float32)})
    with pytest.raises(ModelFileError):
        load_encoder("paper", weights=tmp_path / "bad.npz")


def test_zoo_unknown_name_and_random_weights():
    with pytest.raises(ConfigError, match="unknown model 'vgg'"):
        load_encoder("vgg")
    enc = load_encoder("vggface", width=4, fc_dim=16)
    assert not has_weights(enc) and enc.model_id == "vggface-random-seed0"
    assert enc.encode(_faces(1, 50)).shape == (1, 16)
