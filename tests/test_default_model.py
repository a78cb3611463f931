"""The accurate default (issue 13): no ``--model`` → dlib's ResNet (on the exact ONNX port, with
dlib's model id) when its weights are installed, else the compressed ``general`` model with one
logged warning; an existing gallery gets its own model back."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from PIL import Image

from hybridface import api
from hybridface.cli import main
from hybridface.errors import MissingDependencyError
from hybridface.models import default


@pytest.fixture()
def no_dlib(monkeypatch):
    """Make dlib and its weights unimportable (``sys.modules[name] = None`` is what the import system
    honours): neither dlib's runtime nor the ONNX port has a network to run."""
    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    monkeypatch.setattr(default, "_warned", False)


@pytest.fixture()
def faces_dir(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("ann", "bob"):
        (tmp_path / "data" / name).mkdir(parents=True)
        img = rng.integers(0, 256, size=(60, 60, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "data" / name / "0.png")
    return tmp_path / "data"


def _general_id() -> str:
    return api.load_encoder("general").model_id


def test_default_is_dlib_when_installed():
    if not default.dlib_available():
        pytest.skip("dlib / face_recognition_models not installed (pip install 'hybridface[dlib]')")
    enc = api.load_encoder(None)
    assert enc.model_id.startswith(default.DLIB_PREFIX) and enc.dim == 128
    assert default.default_model_name() == "dlib"


def test_enroll_without_model_uses_the_default(faces_dir, tmp_path):
    if not default.dlib_available():
        pytest.skip("dlib / face_recognition_models not installed (pip install 'hybridface[dlib]')")
    db = tmp_path / "g.db"
    assert main(["-q", "enroll", str(faces_dir), "--db", str(db), "--detect", "never"]) == 0
    with api.open_gallery(db, readonly=True) as g:
        assert g.store.model_id.startswith(default.DLIB_PREFIX)
        assert g.encoder.model_id == g.store.model_id  # reopened without --model: its own model


def test_fallback_without_dlib_warns_once(no_dlib, caplog):
    assert not default.dlib_available() and default.default_model_name() == "general"
    with caplog.at_level(logging.WARNING, logger="hybridface.models.default"):
        a = api.load_encoder(None)
        b = api.load_encoder(None)
    assert a.model_id == b.model_id == _general_id()
    warnings = [r for r in caplog.records if r.name == "hybridface.models.default"]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "pip install 'hybridface[dlib]'" in msg and "experimental" in msg and "%" in msg


def test_fallback_cli_enroll_and_identify(no_dlib, faces_dir, tmp_path, capsys):
    db = str(tmp_path / "g.db")
    assert main(["-q", "enroll", str(faces_dir), "--db", db, "--detect", "never"]) == 0
    assert main(["identify", str(faces_dir / "bob" / "0.png"), "--db", db, "--json", "--detect", "never"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert '"identity": "bob"' in out[-1]
    with api.open_gallery(db, readonly=True) as g:
        assert g.store.model_id == _general_id()


def test_existing_gallery_gets_its_own_model(faces_dir, tmp_path, capsys):
    db = tmp_path / "c.db"
    assert main(["-q", "enroll", str(faces_dir), "--db", str(db), "--model", "classifier", "--detect", "never"]) == 0
    with api.open_gallery(db, readonly=True) as g:  # no model: the classifier, not the default
        assert g.encoder.model_id == api.load_encoder("classifier").model_id
    assert api.gallery_encoder(db).model_id == api.load_encoder("classifier").model_id
    a = str(faces_dir / "ann" / "0.png")
    assert main(["verify", a, a, "--db", str(db), "--threshold", "0.5", "--json", "--detect", "never"]) == 0
    assert '"same": true' in capsys.readouterr().out


def test_dlib_gallery_without_dlib_is_a_clear_error(no_dlib, tmp_path):
    with api.open_gallery(tmp_path / "d.db", create=True) as g:
        g.enroll_vectors("x", np.eye(1, 128, dtype=np.float32), model_id=default.DLIB_PREFIX + "0" * 16)
    with api.open_gallery(tmp_path / "d.db") as g, pytest.raises(MissingDependencyError, match=r"hybridface\[dlib\]"):
        g.encoder


def test_help_says_compressed_models_are_experimental(capsys):
    with pytest.raises(SystemExit):
        main(["enroll", "--help"])
    out = capsys.readouterr().out
    assert "dlib" in out and "experimental" in out


def test_default_runs_dlibs_resnet_on_the_onnx_port(dataset):
    """No --model: dlib's ResNet on ONNX Runtime, carrying dlib's model id, with dlib's templates."""
    if not default.dlib_available():
        pytest.skip("dlib / face_recognition_models not installed (pip install 'hybridface[dlib]')")
    pytest.importorskip("dlib", reason="dlib's runtime is the reference")
    from hybridface.models.resnet_encoder import ResNetEncoder

    enc = api.load_encoder(None)
    ref = api.load_encoder("dlib")
    assert isinstance(enc, ResNetEncoder) and enc.model_id == ref.model_id
    faces = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((dataset("att_orl") / "s1").iterdir())[:4]]
    a, b = enc.encode(faces), ref.encode(faces)
    assert a.shape == b.shape == (4, 128)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
