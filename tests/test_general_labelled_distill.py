"""Distilling the labelled training side (``hybridface train --holdout H --teacher dlib``): the
student crop and the teacher descriptor of one image stay paired, and no held-out image reaches
the teacher. Tiny symlinked slices of the real datasets; the real dlib teacher."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

ROTATIONS = ("att_orl", "vidtimit14", "extended_yale_b")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory, datasets_dir):
    """A datasets root with 2 identities x 6 images of each rotation (symlinks to the real files)."""
    root = tmp_path_factory.mktemp("datasets")
    for name in ROTATIONS:
        src = datasets_dir / name
        if not src.is_dir():
            pytest.skip(f"shared dataset {name!r} not found")
        for ident in sorted(p for p in src.iterdir() if p.is_dir())[:2]:
            (root / name / ident.name).mkdir(parents=True)
            for f in sorted(ident.iterdir())[:6]:
                (root / name / ident.name / f.name).symlink_to(f)
    return root


@pytest.fixture
def spy_teacher(monkeypatch):
    """Records every path handed to the real ``teacher_descriptors`` (and still computes them)."""
    from hybridface.training import teacher as t

    seen: list[str] = []
    real = t.teacher_descriptors

    def spy(paths, **kw):
        seen.extend(str(p) for p in paths)
        return real(paths, **kw)

    monkeypatch.setattr(t, "teacher_descriptors", spy)
    return seen


def _needs_dlib():
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")


def test_holdout_distils_training_side_only_never_a_held_out_image(tiny_root, tmp_path, spy_teacher, capsys):
    _needs_dlib()
    from hybridface.cli import main
    from hybridface.protocols.unseen import unseen

    cache = tmp_path / "tcache"
    for h in ROTATIONS:
        spy_teacher.clear()
        out = tmp_path / f"m-{h}"
        rc = main(["train", str(tiny_root), "--holdout", h, "--teacher", "dlib", "--teacher-cache", str(cache),
                   "--epochs", "1", "--batch-size", "8", "--threads", "1", "--no-progress", "--json",
                   "--out", str(out)])
        assert rc == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        split = unseen(tiny_root, holdout=h)
        train = {str(s.path) for s in split.train}
        held_out = {str(s.path) for s in split.gallery + split.probes + split.distractors}
        seen = set(spy_teacher)
        assert seen and seen <= train  # only training-side files ...
        assert not seen & held_out  # ... never a probe (or gallery) image of the held-out dataset
        assert not any(f"/{h}/" in p for p in seen)
        # label-free: every distilled row is a labelled training image, none used by an identity loss
        assert report["labelled_rows"] == 0 and report["unlabeled_images"] == 0
        assert report["teacher_rows"] == sum(s["distilled"] for s in report["labelled_sources"]) > 0
        assert sum(s["samples"] for s in report["labelled_sources"]) == len(split.train)
        assert report["teacher_rows"] >= 0.8 * len(split.train)
    # with --loss too, the labelled rows get both objectives
    rc = main(["train", str(tiny_root), "--holdout", "att_orl", "--teacher", "dlib", "--loss", "softmax",
               "--teacher-cache", str(cache), "--epochs", "1", "--batch-size", "8", "--threads", "1",
               "--no-progress", "--json", "--out", str(tmp_path / "m-both")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["labelled_rows"] == report["teacher_rows"] > 0 and report["identities"] == 4


def test_labelled_rows_pair_student_crop_and_teacher_descriptor(tiny_root, tmp_path, caplog):
    _needs_dlib()
    from PIL import Image

    from hybridface.models.data import load_face
    from hybridface.training.distill import labelled_rows
    from hybridface.training.teacher import teacher_descriptors

    frames = sorted((tiny_root / "vidtimit14").rglob("*.jpg"))[:4]
    noise = tmp_path / "noise.png"  # no face: the cascade finds nothing, the row is dropped
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 90, 3), np.uint8)).save(noise)
    samples = [(p, p.parent.name) for p in reversed(frames)] + [(noise, "nobody")]
    cache = tmp_path / "tcache"
    with caplog.at_level("INFO", logger="hybridface.training.distill"):
        imgs, ids, desc, stats = labelled_rows(samples, detect="largest", teacher="dlib", teacher_cache=cache,
                                               keep_undistilled=False)
    assert stats["student_dropped"] == 1 and "nobody" not in ids and "1 dropped" in caplog.text
    kept = [p for p, _ in samples[:-1]]
    assert len(imgs) == len(kept) == len(ids) == stats["distilled"]
    ref, ok = teacher_descriptors(kept, cache_dir=cache, detect="largest", compute=False)
    assert ok.all()
    for i, p in enumerate(kept):  # row i: the crop and the descriptor of the same file, same face box
        assert np.array_equal(imgs[i], load_face(p, detect="largest", size=60))
        assert np.array_equal(desc[i], ref[i])
    assert len({d.tobytes() for d in desc}) == len(desc)
    # an in-memory image has no file for the teacher: kept with a zero target for an identity loss, or dropped
    arr = np.asarray(load_face(kept[0], detect="largest", size=60))
    both = [(kept[0], "a"), (arr, "b")]
    _, ids2, desc2, stats2 = labelled_rows(both, detect="largest", teacher="dlib", teacher_cache=cache)
    assert ids2 == ["a", "b"] and stats2["undistilled"] == 1 and not desc2[1].any() and desc2[0].any()
    _, ids3, _, stats3 = labelled_rows(both, detect="largest", teacher="dlib", teacher_cache=cache,
                                      keep_undistilled=False)
    assert ids3 == ["a"] and stats3["teacher_dropped"] == 1


def test_holdout_teacher_unavailable_names_the_extra(tiny_root, tmp_path, monkeypatch, capsys):
    pytest.importorskip("face_recognition_models")
    from hybridface.cli import main

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    monkeypatch.delitem(sys.modules, "hybridface.models.baselines.dlib_encoder", raising=False)
    rc = main(["train", str(tiny_root), "--holdout", "vidtimit14", "--teacher", "dlib", "--teacher-cache",
               str(tmp_path / "empty"), "--epochs", "1", "--no-progress", "--out", str(tmp_path / "m")])
    assert rc == 2 and "hybridface[dlib]" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
