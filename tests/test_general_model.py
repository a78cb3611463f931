"""The shipped general model (``load_encoder("general")``): a distilled network for never-seen people."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ModelFileError


def test_shipped_general_model_loads_by_name_and_encodes():
    from hybridface.api import load_encoder
    from hybridface.models.card import load_card
    from hybridface.models.encoders import default_model_path, shipped_model_path

    path = shipped_model_path("general")
    card, onnx_path = load_card(path.with_suffix(".json"))  # checks the sha256 model id against the file
    assert onnx_path == path and card.onnx_file == "general.onnx" and card.embedding_dim == 60
    assert card.training["objective"]["teacher"] == "dlib" and card.training["teacher_rows"] > 10_000
    enc = load_encoder("general")
    assert enc.model_id == card.model_id and path == default_model_path()
    assert "experimental" in card.training["intended_use"].lower()
    assert load_encoder("classifier").model_id != enc.model_id
    rng = np.random.default_rng(0)
    x = enc.encode(rng.integers(0, 256, size=(3, 60, 60, 3), dtype=np.uint8))
    assert x.shape == (3, 60) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_general_name_with_weights_and_missing_file(tmp_path, monkeypatch):
    from hybridface.models import encoders
    from hybridface.models.zoo import MODEL_NAMES, load_encoder

    assert "general" in MODEL_NAMES
    assert {"general", "classifier"} <= set(MODEL_NAMES)
    classifier = encoders.shipped_model_path("classifier")
    enc = load_encoder("general", weights=classifier)  # an explicit file wins
    assert enc.model_id == load_encoder("classifier").model_id != load_encoder("compressed").model_id
    assert load_encoder("compressed").model_id == load_encoder("general").model_id  # the shipped file
    monkeypatch.setattr(encoders, "shipped_model_path", lambda name: tmp_path / f"{name}.onnx")
    for name in ("general", "classifier"):
        with pytest.raises(ModelFileError, match=f"{name} model is missing"):
            load_encoder(name)


def test_general_model_separates_real_faces_better_than_chance(dataset):
    """Never trained on att_orl identities: same-person pairs must score above stranger pairs."""
    from hybridface.api import load_encoder
    from hybridface.faces.crop import load_crops

    root = dataset("att_orl")
    people = sorted(p for p in root.iterdir() if p.is_dir())[:6]
    paths = [str(f) for p in people for f in sorted(p.iterdir())[:4]]
    crops = load_crops(paths, detect="never")
    x = load_encoder("general").encode(np.stack([c.crop.image for c in crops]))
    ids = np.repeat(np.arange(len(people)), 4)
    sim = x @ x.T
    same = sim[(ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)].mean()
    diff = sim[ids[:, None] != ids[None, :]].mean()
    assert same > diff + 0.1
