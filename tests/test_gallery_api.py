"""The facade: enrol/identify images and vectors, open set, cache refresh, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from hybridface import api
from hybridface.errors import ConfigError, EmptyGalleryError, ModelMismatchError, UnknownIdentityError


class ProjectionEncoder:
    """A small real encoder for tests: fixed random projection of the 60x60 grey face, L2-normalised."""

    input_size = (60, 60)

    def __init__(self, model_id: str = "test-projection", dim: int = 60) -> None:
        self.model_id, self.dim = model_id, dim
        self._w = np.random.default_rng(123).normal(size=(3600, dim)).astype(np.float32)

    def encode(self, images):
        x = np.asarray(images, dtype=np.float32).mean(axis=3).reshape(len(images), -1) / 255.0
        v = (x - x.mean(axis=1, keepdims=True)) @ self._w
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _faces(seed: int, n: int, noise: float = 12.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(60, 60, 3)).astype(np.float32)
    return [np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.fixture
def gallery(tmp_path):
    with api.open_gallery(tmp_path / "g.db", encoder=ProjectionEncoder(), create=True) as g:
        yield g


def test_enroll_and_identify_images(gallery, tmp_path):
    for i, name in enumerate(["ann", "bob", "cid"]):
        rep = gallery.enroll(name, _faces(i, 4), detect="never")
        assert rep.added == 4 and rep.skipped == ()
    paths = []
    for j, img in enumerate(_faces(1, 2)):
        paths.append(tmp_path / f"probe{j}.png")
        Image.fromarray(img).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    answers = gallery.identify([*paths, tmp_path / "broken.png", tmp_path / "missing.png"], k=2, detect="never")
    assert [a.identity for a in answers[:2]] == ["bob", "bob"]
    assert answers[0].candidates[0][0] == "bob" and len(answers[0].candidates) == 2
    assert [a.status for a in answers[2:]] == ["error", "error"]
    assert "broken.png" in answers[2].error and answers[3].identity is None
    assert set(answers[0].to_dict()) == {"probe", "identity", "distance", "candidates", "status", "error"}
    # the same files again: no-op; a bad file is reported, never aborts
    rep = gallery.enroll("bob", [*paths, tmp_path / "broken.png"], detect="never")
    assert rep.added == 2 and len(rep.skipped) == 1 and "broken.png" in rep.skipped[0][0]
    assert gallery.enroll("bob", paths, detect="never").duplicates == 2
    assert dict(gallery.identities())["bob"] == 6


def test_open_set_threshold_and_calibration(gallery):
    faces = {n: _faces(i, 6) for i, n in enumerate(["a", "b", "c", "d"])}
    for n, imgs in faces.items():
        gallery.enroll(n, imgs[:3], detect="never")
    cal = gallery.calibrate([im for imgs in faces.values() for im in imgs[3:]],
                            [n for n, imgs in faces.items() for _ in imgs[3:]], target_far=0.05, detect="never")
    assert gallery.threshold == pytest.approx(cal.threshold) and cal.far <= 0.05 and cal.genuine_pairs == 12
    stranger = gallery.identify(np.stack(_faces(99, 1)), detect="never")[0]
    assert stranger.identity is None and stranger.status == "ok" and stranger.candidates
    new_c = np.stack(_faces(2, 7)[6:])  # an unseen image of "c"
    known = gallery.identify(new_c, detect="never")[0]
    assert known.identity == "c" and 0 < known.distance <= cal.threshold
    assert gallery.identify(new_c, threshold=known.distance / 2, detect="never")[0].identity is None
    with pytest.raises(ConfigError):
        gallery.identify(new_c, threshold=float("nan"), detect="never")


def test_vectors_all_strategies_and_cache_refresh(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 60)).astype(np.float32)
    g = api.open_gallery(tmp_path / "v.db", create=True)
    for i in range(5):
        g.enroll_vectors(f"p{i}", centres[i] + 0.1 * rng.normal(size=(3, 60)), model_id="vec")
    probes = centres[[4, 0]] + 0.05 * rng.normal(size=(2, 60)).astype(np.float32)
    for strategy in ("exhaustive", "indexed", "parallel", "hybrid"):
        out = g.identify_vectors(probes, strategy=strategy, top_n=5, workers=2, k=3)
        assert [a.identity for a in out] == ["p4", "p0"]
    # another handle (as another process would) enrols: the first one sees it on the next search
    with api.open_gallery(tmp_path / "v.db") as other:
        other.enroll_vectors("p5", centres[5][None], model_id="vec")
    assert g.identify(centres[5][None].astype(np.float32), strategy="exhaustive", detect="never")[0].identity == "p5"
    g.rename("p5", "newbie")
    assert g.identify_vectors(centres[5][None], strategy="hybrid")[0].identity == "newbie"
    g.remove("newbie")
    assert g.identify_vectors(centres[5][None], strategy="hybrid")[0].identity != "newbie"
    with pytest.raises(UnknownIdentityError):
        g.remove("newbie")
    g.close()


def test_bad_vectors_and_empty_gallery(tmp_path):
    g = api.open_gallery(tmp_path / "e.db", create=True)
    with pytest.raises(EmptyGalleryError):
        g.identify_vectors(np.ones((1, 60), np.float32))
    g.enroll_vectors("a", np.ones((1, 60)), model_id="vec")
    bad = np.ones((3, 60), np.float32)
    bad[2, 0] = np.nan
    with pytest.raises(ConfigError, match=r"\[2\]"):
        g.identify_vectors(bad)
    bad[2, 0] = np.inf
    with pytest.raises(ConfigError):
        g.identify(bad, detect="never")
    with pytest.raises(ModelMismatchError):
        g.identify_vectors(np.ones((1, 59), np.float32))
    with pytest.raises(ModelMismatchError):
        g.enroll_vectors("b", np.ones((1, 61)), model_id="vec")
    with pytest.raises(ModelMismatchError):
        g.enroll_vectors("b", np.ones((1, 60)), model_id="other-model")
    with pytest.raises(ConfigError):
        g.identify_vectors(np.ones((1, 60), np.float32), strategy="magic")
    if importlib.util.find_spec("hybridface.engines.ray") is None:
        with pytest.raises(ConfigError, match="engine 'ray' not available"):
            g.identify_vectors(np.ones((1, 60), np.float32), engine="ray")
    g.close()


def test_encoder_model_mismatch(tmp_path):
    with api.open_gallery(tmp_path / "m.db", encoder=ProjectionEncoder("model-a"), create=True) as g:
        g.enroll("a", _faces(0, 1), detect="never")
    with pytest.raises(ModelMismatchError, match="model-a"):
        api.open_gallery(tmp_path / "m.db", encoder=ProjectionEncoder("model-b"))
    with pytest.raises(ModelMismatchError):
        api.open_gallery(tmp_path / "m.db", encoder=ProjectionEncoder("model-a", dim=32))


def test_probe_without_face_is_no_face(gallery):
    if importlib.util.find_spec("hybridface.faces.detect") is None:
        pytest.skip("face detector (hybridface.faces.detect) not available yet")
    gallery.enroll("a", _faces(0, 2), detect="never")
    blank = np.full((120, 120, 3), 128, np.uint8)
    out = gallery.identify([blank], detect="always")
    assert out[0].status == "no_face" and out[0].identity is None and out[0].error


def test_verify(tmp_path):
    enc = ProjectionEncoder()
    a, b = _faces(0, 2)
    (c,) = _faces(5, 1)
    same = api.verify(a, b, encoder=enc, threshold=0.3, detect="never")
    diff = api.verify(a, c, encoder=enc, threshold=0.3, detect="never")
    assert same.same and not diff.same and same.distance < diff.distance
    v = enc.encode(np.stack([a, c]))
    assert api.verify(v[0], v[1], threshold=0.3, detect="never").distance == pytest.approx(diff.distance, abs=1e-5)
    with pytest.raises(ConfigError, match="threshold"):
        api.verify(a, b, encoder=enc, detect="never")
    with pytest.raises(ModelMismatchError):
        api.verify(v[0], v[1, :30], threshold=0.3, detect="never")
