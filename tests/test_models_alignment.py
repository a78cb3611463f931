"""Alignment without dlib: the 5-point shape predictor and chip extraction ported to NumPy, checked
against dlib (the reference) on faces from ../shared, and the core-only ``resnet`` path."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hybridface.errors import ConfigError, ModelFileError

HINT = "pip install 'hybridface[dlib]'"


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from hybridface.models.landmarks import ShapePredictor

    try:
        return ShapePredictor(cache_dir=tmp_path_factory.mktemp("shape_cache"))
    except ModelFileError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def reference(datasets_dir):
    pytest.importorskip("dlib")
    from dlib_chips import dlib_reference, sample_files

    return dlib_reference(sample_files(datasets_dir, 100, seed=1))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    pytest.importorskip("onnx")
    from hybridface.models.resnet_encoder import cached_onnx_path

    root = tmp_path_factory.mktemp("resnet_cache")
    try:
        cached_onnx_path(cache_dir=root)
    except ModelFileError as exc:
        pytest.skip(str(exc))
    return root


def test_similarity_recovers_a_known_transform():
    from hybridface.models.landmarks import similarity

    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2))
    ang, s, t = 0.3, 1.7, np.array([4.0, -2.0])
    a_true = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    a, b = similarity(src, src @ a_true.T + t)
    assert np.allclose(a, a_true) and np.allclose(b, t)


def test_landmarks_match_dlib(reference, predictor):
    ours = predictor.predict(reference["images"], reference["boxes"])
    diff = np.abs(ours - reference["landmarks"]).max(axis=(1, 2))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.95, np.bincount(diff.astype(int))


def test_chips_match_dlib_given_the_same_landmarks(reference):
    from hybridface.models.chip import face_chips

    ours = face_chips(reference["images"], reference["landmarks"])
    diff = np.abs(ours.astype(np.int16) - reference["chips"])
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.9999


def test_whole_port_matches_dlib_descriptors(reference, predictor, cache):
    from hybridface.models.chip import face_chips
    from hybridface.models.resnet_encoder import ResNetEncoder

    enc = ResNetEncoder(cache_dir=cache, threads=1)
    chips = face_chips(reference["images"], predictor.predict(reference["images"], reference["boxes"]))
    ours, ref = enc.descriptors(chips), reference["descriptors"]
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999 and np.abs(ours - ref).max() <= 1e-2, (cos.min(), np.abs(ours - ref).max())


def test_encoder_on_face_crops_matches_the_dlib_encoder(dataset, cache):
    pytest.importorskip("dlib")
    from hybridface.models.baselines.dlib_encoder import DlibEncoder
    from hybridface.models.zoo import load_encoder

    files = sorted((dataset("vidtimit14")).rglob("*.jpg"))[::400][:8]
    ours = load_encoder("resnet", cache_dir=cache, threads=1).encode(files)
    theirs = DlibEncoder().encode(files)
    assert ours.shape == theirs.shape == (len(files), 128)
    assert (ours * theirs).sum(1).min() >= 0.9999


def test_core_only_runtime_runs_resnet_end_to_end(dataset, cache):
    """numpy + onnxruntime + opencv (+ numba): dlib, torch and onnx cannot be imported."""
    img = sorted((dataset("vidtimit14")).rglob("*.jpg"))[0]
    code = textwrap.dedent(f"""
        import sys
        for m in ("dlib", "torch", "onnx", "_dlib_pybind11"):
            sys.modules[m] = None
        import numpy as np
        from hybridface.faces.io import load_image
        from hybridface.models.chip import face_chips
        from hybridface.models.landmarks import ShapePredictor
        from hybridface.models.resnet_encoder import ResNetEncoder
        img = load_image({str(img)!r})
        box = np.array([[60, 40, 180, 160]], float)
        chips = face_chips([img], ShapePredictor(cache_dir={str(cache)!r}).predict([img], box))
        t = ResNetEncoder(cache_dir={str(cache)!r}, threads=1).embed_chips(chips)
        assert t.shape == (1, 128) and abs(float(np.linalg.norm(t)) - 1) < 1e-5
        assert not any(k in sys.modules and sys.modules[k] is not None for k in ("dlib", "torch", "onnx"))
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# ------------------------------------------------------------------ bad input


def test_bad_landmarks_images_and_boxes_are_config_errors(predictor):
    from hybridface.models.chip import face_chip, face_chips

    img = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ConfigError, match="landmarks"):
        face_chip(img, np.zeros((68, 2)))
    with pytest.raises(ConfigError, match="landmarks"):
        face_chips([img], np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="uint8"):
        face_chip(img.astype(np.float32), np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="boxes"):
        predictor.predict([img], np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="uint8"):
        predictor.predict([img.astype(np.float64)], np.zeros((1, 4)))
    with pytest.raises(ConfigError, match="finite"):
        predictor.predict([img], [[0, 0, np.nan, 99]])
    with pytest.raises(ConfigError, match="finite"):
        face_chips([img], np.full((1, 5, 2), np.inf))


def test_missing_or_damaged_predictor_names_the_install_command(tmp_path, predictor):
    from hybridface.models.landmarks import ShapePredictor
    from hybridface.models.dlib_format import default_dat_path

    with pytest.raises(ModelFileError, match=r"does not exist.*hybridface\[dlib\]"):
        ShapePredictor(tmp_path / "nope.dat")
    data = default_dat_path().with_name("shape_predictor_5_face_landmarks.dat").read_bytes()
    for name, bad in {"cut": data[: len(data) // 2], "junk": b"\x01\x01" + b"\x05" * 100, "tail": data + b"\x01"}.items():
        p = tmp_path / f"{name}.dat"
        p.write_bytes(bad)
        with pytest.raises(ModelFileError) as e:
            ShapePredictor(p, cache_dir=tmp_path)
        assert HINT in str(e.value) and "\n" not in str(e.value)
    # the descriptor network is a dlib file too, but not a shape predictor
    with pytest.raises(ModelFileError, match=r"hybridface\[dlib\]"):
        ShapePredictor(default_dat_path(), cache_dir=tmp_path)


def test_parsed_predictor_cache_is_reused_and_verified(tmp_path, predictor):
    from hybridface.models.landmarks import ShapePredictor

    a = ShapePredictor(cache_dir=tmp_path)
    (npz,) = tmp_path.glob("shape-*.npz")
    b = ShapePredictor(cache_dir=tmp_path)  # from the cache
    assert all(np.array_equal(getattr(a.model_, k), getattr(b.model_, k)) for k in a.model_.__dataclass_fields__)
    npz.write_bytes(npz.read_bytes()[:1000])  # damaged: parsed again, never loaded
    c = ShapePredictor(cache_dir=tmp_path)
    assert np.array_equal(c.model_.leaves, a.model_.leaves)
    img = np.full((120, 120, 3), 128, np.uint8)
    assert np.array_equal(a.predict([img], [[10, 10, 110, 110]]), c.predict([img], [[10, 10, 110, 110]]))


def test_front_ends_take_the_new_names(cache, monkeypatch):
    """The facade every front end uses (enrol, identify, serve, evaluate) resolves the zoo names."""
    from hybridface import api
    from hybridface.models.resnet_encoder import ResNetEncoder
    from hybridface.models.zoo import MODEL_NAMES

    monkeypatch.setenv("HYBRIDFACE_CACHE", str(cache))
    assert {"resnet", "resnet-int8"} <= set(MODEL_NAMES)
    enc = api.load_encoder("resnet")
    assert isinstance(enc, ResNetEncoder) and enc.dim == 128 and enc.input_size == (150, 150)
