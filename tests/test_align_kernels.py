"""The compiled alignment kernels (landmark cascade, chip sampler) are bit-identical to the NumPy
ports they replace, on real faces from ../shared: whole photos, face crops, grey images, boxes and
chips that run off the image, and faces large enough to take the chip's shrink path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from hybridface.errors import ModelFileError

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    from hybridface.models.landmarks import ShapePredictor

    root = tmp_path_factory.mktemp("shape_cache")
    try:
        return ShapePredictor(cache_dir=root), ShapePredictor(cache_dir=root, compiled=False)
    except ModelFileError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def photos(datasets_dir):
    from dlib_chips import sample_files
    from hybridface.faces.io import load_image

    files = sample_files(datasets_dir, 240, seed=7)
    if len(files) < 100:
        pytest.skip(f"only {len(files)} images under {datasets_dir}")
    return [load_image(f) for f in files]


def _cases(photos: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """(image, box) pairs: each photo whole, centre box, a jittered box running off the image,
    its 150x150 resize (the encoders' crop path) and, every third, its grey version."""
    rng = np.random.default_rng(3)
    images, boxes = [], []
    for i, img in enumerate(photos):
        h, w = img.shape[:2]
        crop = cv2.resize(img, (150, 150), interpolation=cv2.INTER_AREA)
        jitter = rng.uniform(-0.3, 0.3, 4) * [w, h, w, h]
        for im, box in ((img, [0, 0, w - 1, h - 1]), (img, [w * 0.2, h * 0.15, w * 0.8, h * 0.85]),
                        (img, np.array([0, 0, w - 1, h - 1]) + jitter), (crop, [0, 0, 149, 149])):
            images.append(np.ascontiguousarray(im))
            boxes.append(box)
        if i % 3 == 0:
            images.append(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
            boxes.append([w * 0.1, h * 0.1, w * 0.9, h * 0.9])
    return images, np.asarray(boxes, np.float64)


def test_compiled_landmarks_are_bit_identical_on_real_faces(photos, predictors):
    fast, ref = predictors
    images, boxes = _cases(photos)
    ours, theirs = fast.predict(images, boxes), ref.predict(images, boxes)
    assert len(images) >= 900 and ours.dtype == theirs.dtype == np.int64
    bad = np.flatnonzero((ours != theirs).any(axis=(1, 2)))
    assert bad.size == 0, f"{bad.size} of {len(images)} differ, first {bad[:5]}"
    # a batch of one size (the encoders' crops) runs all faces through each cascade at once
    crops = np.stack([im for im in images if im.shape == (150, 150, 3)])
    box = np.tile([0, 0, 149, 149.0], (len(crops), 1))
    assert len(crops) >= 200 and np.array_equal(fast.predict(crops, box), ref.predict(crops, box))
    grey = crops[:40].sum(axis=3, dtype=np.uint16).__floordiv__(3).astype(np.uint8)
    assert np.array_equal(fast.predict(grey, box[:40]), ref.predict(grey, box[:40]))
    assert np.array_equal(fast.predict(crops[:40], box[:40]), np.stack([fast.predict_one(c, b) for c, b in zip(crops[:40], box)]))
    # non-contiguous and read-only views take the same path
    view = images[0][::-1, ::-1]
    view.flags.writeable = False
    assert np.array_equal(fast.predict_one(view, boxes[0]), ref.predict_one(view, boxes[0]))


def test_stacked_similarity_is_bit_identical_to_one_at_a_time():
    """The batch path solves every face's Umeyama similarity in one stacked call: same bits."""
    from hybridface.models.landmarks import _similarity_centred, similarity

    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2))
    s0 = src - src.mean(0)
    var = (s0 ** 2).sum(1).mean()
    dst = np.concatenate([src @ rng.normal(size=(300, 2, 2)) + rng.normal(size=(300, 1, 2)),
                          rng.normal(size=(100, 5, 2)), np.zeros((1, 5, 2)), np.ones((1, 5, 2)),
                          src[None] * [1, -1]], dtype=np.float32)  # also degenerate and mirrored
    a, md = _similarity_centred(s0, var, dst)
    for i in range(len(dst)):
        ai, mi = _similarity_centred(s0, var, dst[i])
        assert np.array_equal(a[i], ai) and np.array_equal(md[i], mi), i
    a1, t1 = similarity(src, dst[0])
    assert a1.shape == (2, 2) and t1.shape == (2,) and np.array_equal(a1, a[0])


def test_compiled_chips_are_bit_identical_on_real_faces(photos, predictors):
    from hybridface.models.chip import face_chips

    fast, _ = predictors
    rgb = [im for im in _cases(photos)[0] if im.ndim == 3]
    h_w = np.array([[im.shape[1] - 1, im.shape[0] - 1] for im in rgb], np.float64)
    marks = fast.predict(rgb, np.concatenate([np.zeros_like(h_w), h_w], axis=1))
    rng = np.random.default_rng(5)
    # also landmarks turned, shifted half off the image, and spread so wide the chip shrinks first
    turned = (marks - marks.mean(1, keepdims=True)) @ np.array([[0.8, -0.6], [0.6, 0.8]]) + marks.mean(1, keepdims=True)
    off = marks + rng.uniform(-0.6, 0.6, (len(marks), 1, 2)) * h_w[:, None]
    wide = (marks - marks.mean(1, keepdims=True)) * 3.5 + marks.mean(1, keepdims=True)
    for lm in (marks, np.round(turned), np.round(off), np.round(wide)):
        ours = face_chips(rgb, lm)
        theirs = face_chips(rgb, lm, compiled=False)
        assert ours.shape == theirs.shape == (len(rgb), 150, 150, 3)
        bad = np.flatnonzero((ours != theirs).any(axis=(1, 2, 3)))
        assert bad.size == 0, f"{bad.size} of {len(rgb)} chips differ, first {bad[:5]}"
    assert (face_chips(rgb[:4], np.round(off[:4])) == 0).any()  # the off-image branch ran
    for size in (60, 151):
        assert np.array_equal(face_chips(rgb[:8], marks[:8], size=size, padding=0.1),
                              face_chips(rgb[:8], marks[:8], size=size, padding=0.1, compiled=False))


def test_without_numba_the_numpy_ports_run(datasets_dir, predictors):
    """Numba missing: the same landmarks and chips, from the NumPy code (the kernel loader says None)."""
    from dlib_chips import sample_files

    f = sample_files(datasets_dir, 1, seed=2)[0]
    code = textwrap.dedent(f"""
        import sys
        sys.modules["numba"] = None
        import numpy as np
        from hybridface.faces.io import load_image
        from hybridface.models.align_kernels import kernel
        from hybridface.models.chip import face_chips
        from hybridface.models.landmarks import ShapePredictor
        assert kernel("cascade_step") is None and kernel("chip_sample") is None
        img = load_image({str(f)!r})
        h, w = img.shape[:2]
        lm = ShapePredictor().predict([img], [[0, 0, w - 1, h - 1]])
        chip = face_chips([img], lm)
        np.save(sys.argv[1], np.concatenate([lm.ravel(), chip.ravel().astype(np.int64)]))
    """)
    out = predictors[0]
    from hybridface.faces.io import load_image

    img = load_image(f)
    h, w = img.shape[:2]
    lm = out.predict([img], [[0, 0, w - 1, h - 1]])
    from hybridface.models.chip import face_chips

    expect = np.concatenate([lm.ravel(), face_chips([img], lm).ravel().astype(np.int64)])
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "out.npy"
        run = subprocess.run([sys.executable, "-c", code, str(dst)], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert np.array_equal(np.load(dst), expect)
