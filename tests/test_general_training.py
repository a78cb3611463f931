"""General-model training: margin losses, teacher cache (corrupt files, missing dlib), distillation, CLI."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hybridface.errors import ConfigError, DatasetError, MissingDependencyError  # noqa: E402
from hybridface.training.losses import MarginHead, cosine_distill_loss, make_head, relational_distill_loss  # noqa: E402


def test_arcface_margin_applies_to_true_class_only():
    torch.manual_seed(0)
    head = MarginHead(4, 3, kind="arcface", scale=10.0, margin=0.5)
    f = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 0, 1])
    plain, with_m = head.logits(f), head.logits(f, y)
    cos = head.cosines(f)
    mask = torch.zeros_like(cos, dtype=torch.bool).scatter(1, y[:, None], True)
    assert torch.allclose(plain[~mask], with_m[~mask])
    theta = torch.acos(cos[mask])
    expected = torch.where(theta + 0.5 < math.pi, torch.cos(theta + 0.5), cos[mask] - math.sin(math.pi - 0.5) * 0.5)
    assert torch.allclose(with_m[mask], 10.0 * expected, atol=1e-4)
    assert (with_m[mask] < plain[mask]).all()  # the margin makes the true class harder


def test_cosface_margin_and_loss_decreases_when_trained():
    torch.manual_seed(0)
    head = MarginHead(2, 2, kind="cosface", scale=5.0, margin=0.2)
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    assert torch.allclose(head.logits(f, y).gather(1, y[:, None]).squeeze(1),
                          5.0 * (head.cosines(f).gather(1, y[:, None]).squeeze(1) - 0.2))
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    first = float(head(f, y).detach())
    for _ in range(30):
        opt.zero_grad()
        head(f, y).backward()
        opt.step()
    assert float(head(f, y).detach()) < first


def test_bad_loss_options():
    with pytest.raises(ConfigError, match="unknown loss"):
        make_head("triplet", 60, 3)
    with pytest.raises(ConfigError, match="at least 2"):
        make_head("arcface", 60, 1)
    with pytest.raises(ConfigError, match="shapes differ"):
        cosine_distill_loss(torch.zeros(2, 128), torch.zeros(3, 128))
    assert float(cosine_distill_loss(torch.ones(2, 128), torch.ones(2, 128) * 3)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="rows"):
        relational_distill_loss(torch.zeros(2, 60), torch.zeros(3, 128))


def test_relational_loss_is_zero_for_same_geometry_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(16, 128, generator=g)
    rot, _ = torch.linalg.qr(torch.randn(128, 128, generator=g))
    # a rotated and rescaled copy (and a 60-D student of another width) has the same pairwise cosines
    assert float(relational_distill_loss(t @ rot * 3.0, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(relational_distill_loss(torch.randn(16, 60, generator=g), t)) > 1e-3
    s = torch.randn(16, 60, generator=g, requires_grad=True)
    relational_distill_loss(s, t).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0


# ---------------------------------------------------------------- teacher cache


def test_teacher_cache_roundtrip_and_corrupt_files(tmp_path, caplog):
    from hybridface.training.teacher import TeacherCache

    cache = TeacherCache(tmp_path, "dlib-test")
    v = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    cache.put("ab" * 32, v)
    assert np.array_equal(cache.get("ab" * 32), v)
    assert cache.get("cd" * 32) is None
    p = cache.path("ab" * 32)
    # a flipped value (checksum), a truncated file, a wrong shape: each detected, removed, reported
    with np.load(p) as z:
        digest = str(z["sha256"])
    bad = v.copy()
    bad[0] += 1
    np.savez(p, descriptor=bad, sha256=np.array(digest))
    assert cache.get("ab" * 32) is None and not p.exists()
    cache.put("ab" * 32, v)
    p.write_bytes(p.read_bytes()[:50])
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, v)
    np.savez(p, descriptor=v[:64], sha256=np.array(digest))
    assert cache.get("ab" * 32) is None
    assert cache.corrupt == 3 and "corrupt teacher descriptor" in caplog.text


def test_teacher_missing_dependency_names_the_extra(monkeypatch):
    from hybridface.training import teacher as t

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    monkeypatch.delitem(sys.modules, "hybridface.models.baselines.dlib_encoder", raising=False)
    with pytest.raises(MissingDependencyError, match=r"hybridface\[dlib\]"):
        t.load_teacher("dlib")
    with pytest.raises(ConfigError, match="unknown teacher"):
        t.load_teacher("vggface")


def test_teacher_descriptors_real_faces_cached_and_recomputed(tmp_path, dataset):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from hybridface.training.teacher import TeacherCache, _dlib_teacher_id, select_unlabeled, teacher_descriptors

    files = select_unlabeled(dataset("unlabeled_faces") / "utkface", limit=2, seed=0)
    assert files == select_unlabeled(dataset("unlabeled_faces") / "utkface", limit=3, seed=0)[:2]
    d1, ok = teacher_descriptors(files, cache_dir=tmp_path)
    assert ok.all() and d1.shape == (2, 128) and np.allclose(np.linalg.norm(d1, axis=1), 1, atol=1e-5)
    cache = TeacherCache(tmp_path, _dlib_teacher_id())
    stored = sorted(cache.dir.rglob("*.npz"))
    assert len(stored) == 2
    stored[0].write_bytes(b"not an npz")
    d2, ok = teacher_descriptors(files, cache_dir=tmp_path, compute=False)
    assert ok.sum() == 1  # the corrupt one is reported missing ...
    d3, ok = teacher_descriptors(files, cache_dir=tmp_path)
    assert ok.all() and np.allclose(d1, d3, atol=1e-6)  # ... and recomputed


# ---------------------------------------------------------------- training


def _toy(n_ids=3, per=12, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 255, (n_ids, 60, 60, 3)).astype(np.float32)
    imgs = np.clip(np.repeat(protos, per, 0) + rng.normal(0, 12, (n_ids * per, 60, 60, 3)), 0, 255).astype(np.uint8)
    labels = [f"id{i}" for i in range(n_ids) for _ in range(per)]
    teacher = np.repeat(np.eye(n_ids, 128, dtype=np.float32), per, 0)
    return imgs, labels, teacher


def test_general_distillation_and_arcface_learn():
    from hybridface.training.trainer import TrainConfig, train

    imgs, labels, teacher = _toy()
    cfg = TrainConfig.general(epochs=6, lr=3e-3, batch_size=12, augment="none", val_fraction=0.0, progress=False,
                              threads=1)
    r = train(cfg, imgs, teacher=teacher)
    first, last = r.history[0]["loss"], r.history[-1]["loss"]
    assert last < first and r.teacher_rows == len(imgs)
    r = train(cfg.with_(epochs=4, relation_weight=5.0), imgs, teacher=teacher)
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    with pytest.raises(ConfigError, match="relation_weight"):
        cfg.with_(relation_weight=-1.0)
    r = train(TrainConfig.general(loss="arcface", epochs=3, batch_size=12, progress=False, threads=1), imgs,
              labels=labels)
    info = r.summary()
    assert info["identities"] == 3 and info["labelled_rows"] == 36 and "val_acc" in info
    with pytest.raises(DatasetError, match="nothing to train"):
        train(cfg.with_(epochs=1), imgs)
    with pytest.raises(DatasetError, match="at least 2 identities"):
        train(cfg.with_(loss="softmax", epochs=1), imgs, labels=["a"] * len(imgs))


def test_strong_augment_keeps_shape_and_changes_pixels():
    from hybridface.faces.augment import strong_augment

    imgs, _, _ = _toy(1, 4)
    out = strong_augment(imgs, np.random.default_rng(0))
    assert out.shape == imgs.shape and out.dtype == np.uint8 and not np.array_equal(out, imgs)
    assert np.array_equal(out, strong_augment(imgs, np.random.default_rng(0)))


def test_cli_train_wide_cosface_exports_60d_onnx(tmp_path, capsys):
    from PIL import Image

    from hybridface.cli import main
    from hybridface.models.encoders import OnnxEncoder

    imgs, labels, _ = _toy(2, 6)
    for i, (im, lab) in enumerate(zip(imgs, labels)):
        (tmp_path / "data" / lab).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(tmp_path / "data" / lab / f"{i}.png")
    out = tmp_path / "model"
    rc = main(["train", str(tmp_path / "data"), "--loss", "cosface", "--arch", "wide", "--epochs", "1",
               "--no-progress", "--json", "--threads", "1", "--out", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["arch"] == "wide" and 25_000 < report["feature_parameters"] <= 250_000
    enc = OnnxEncoder(out)
    e = enc.encode(imgs[:3])
    assert e.shape == (3, 60) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert main(["train", "--loss", "softmax", "--out", str(tmp_path / "m2"), "--no-progress"]) == 2
    assert main(["train", "--teacher", "dlib", "--out", str(tmp_path / "m3"), "--no-progress"]) == 2


def test_batchnorm_trainer_folds_into_the_same_network():
    from hybridface.training.trainer import TrainConfig, train
    from hybridface.training.variants import BatchNormTrainer, build_network

    torch.manual_seed(0)
    w = BatchNormTrainer(build_network("paper", 3))
    for _ in range(3):  # move the running statistics away from (0, 1)
        w.features(torch.randn(16, 3, 60, 60) * 2 + 1).sum().backward()
    for bn in w.bns:
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
    w.eval()
    x = torch.randn(4, 3, 60, 60)
    with torch.no_grad():
        before = w.features(x)
        net = w.fold()
        after = net.features(x)
    assert type(net).__name__ == "CompressedVGGFace" and not any("bns" in k for k in net.state_dict())
    assert torch.allclose(before, after, atol=1e-4)
    imgs, _, teacher = _toy()
    r = train(TrainConfig.general(epochs=2, batch_size=12, batchnorm=True, progress=False, threads=1), imgs,
              teacher=teacher)
    assert r.summary()["batchnorm"] and r.feature_parameters == 24_798
    assert type(r.net).__name__ == "CompressedVGGFace"
