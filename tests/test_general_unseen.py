"""The ``unseen`` protocol: leave-one-dataset-out, train and test identities disjoint, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybridface.errors import ConfigError, DatasetError
from hybridface.protocols import get_protocol
from hybridface.protocols.unseen import UnseenSplit, unseen_training_sources


def _make_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    layout = {"att_orl": (4, 7), "extended_yale_b": (3, 6), "vidtimit14": (2, 3)}
    for ds, (n_ids, n_img) in layout.items():
        for i in range(n_ids):
            d = tmp_path / ds / f"s{i}"
            d.mkdir(parents=True)
            for j in range(n_img):
                Image.fromarray(rng.integers(0, 255, (20, 16), dtype=np.uint8)).save(d / f"{j}.png")
    (tmp_path / "unlabeled_faces").mkdir()  # not a rotation: ignored
    return tmp_path


@pytest.mark.parametrize("holdout", ["att_orl", "extended_yale_b", "vidtimit14"])
def test_train_and_test_identities_are_disjoint(tmp_path, holdout):
    root = _make_root(tmp_path)
    split = get_protocol("unseen", root, seed=3, holdout=holdout, gallery_per_identity=2)
    assert isinstance(split, UnseenSplit) and split.holdout == holdout
    test_ids = {s.identity for s in (*split.gallery, *split.probes, *split.distractors)}
    train_ids = {s.identity for s in split.train}
    assert test_ids and train_ids and not test_ids & train_ids
    assert all(i.startswith(f"{holdout}/") for i in test_ids)
    assert all(root / holdout not in s.path.parents for s in split.train)
    assert set(split.train_datasets) == {"att_orl", "extended_yale_b", "vidtimit14"} - {holdout}
    # every file of the training datasets is on the training side, once
    n_train_files = sum(1 for d in split.train_datasets for _ in (root / d).rglob("*.png"))
    assert len({s.path for s in split.train}) == len(split.train) == n_train_files
    # gallery: first k (seeded) per identity, probes the rest, no shared file
    assert not {s.path for s in split.gallery} & {s.path for s in split.probes}
    for ident, count in split.counts().items():
        assert count == 2, ident
    assert split.detect == ("largest" if holdout == "vidtimit14" else "never")
    assert holdout in split.summary()


def test_deterministic_and_seed_dependent(tmp_path):
    root = _make_root(tmp_path)
    a = get_protocol("unseen", root, seed=1, holdout="att_orl", gallery_per_identity=3)
    b = get_protocol("unseen", root, seed=1, holdout="att_orl", gallery_per_identity=3)
    c = get_protocol("unseen", root, seed=2, holdout="att_orl", gallery_per_identity=3)
    assert a == b
    assert [s.path for s in a.gallery] != [s.path for s in c.gallery]


def test_training_sources_use_each_datasets_detect_policy(tmp_path):
    root = _make_root(tmp_path)
    sources = unseen_training_sources(root, holdout="att_orl")
    by_policy = {detect: {s.identity.split("/")[0] for s in samples} for samples, detect, _ in sources}
    assert by_policy == {"never": {"extended_yale_b"}, "largest": {"vidtimit14"}}
    assert all(prefix == "" for _, _, prefix in sources)


def test_identities_without_probe_images_become_distractors(tmp_path):
    root = _make_root(tmp_path)
    small = root / "att_orl" / "s0"
    for f in sorted(small.iterdir())[2:]:
        f.unlink()  # s0 keeps 2 images: with k=3 it cannot be probed
    split = get_protocol("unseen", root, holdout="att_orl", gallery_per_identity=3)
    assert {s.identity for s in split.distractors} == {"att_orl/s0"}
    assert "att_orl/s0" not in {s.identity for s in split.probes}
    with pytest.raises(DatasetError, match="lower gallery_per_identity"):
        get_protocol("unseen", root, holdout="vidtimit14", gallery_per_identity=3)  # 3 images each


def test_bad_options(tmp_path):
    root = _make_root(tmp_path)
    with pytest.raises(ConfigError, match="holdout"):
        get_protocol("unseen", root, holdout="lfw")
    with pytest.raises(ConfigError, match="at least two datasets"):
        get_protocol("unseen", root, holdout="att_orl", datasets="att_orl")
    with pytest.raises(ConfigError, match="gallery_per_identity"):
        get_protocol("unseen", root, holdout="att_orl", gallery_per_identity=0)
    with pytest.raises(DatasetError, match="not found"):
        get_protocol("unseen", root / "nope", holdout="att_orl")


def test_real_rotation_att_orl(datasets_dir):
    split = get_protocol("unseen", datasets_dir, holdout="att_orl")
    assert len(split.identities) == 40 and len(split.gallery) == 200 and len(split.probes) == 200
    assert {s.identity.split("/")[0] for s in split.train} == {"extended_yale_b", "vidtimit14"}
