"""Detection back-ends on a handful of real VidTIMIT frames, no-face images, and the crop cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hybridface.errors import ConfigError, NoFaceError
from hybridface.faces.cache import CropCache
from hybridface.faces.crop import extract_faces, load_crops
from hybridface.faces.detect import DETECTORS, detect_faces
from hybridface.faces.io import load_image

FRONTAL = "faks0/faks0_1874.jpg"  # frontal face, found by dlib HOG
PROFILE = "fcmh0/fcmh0_1929.jpg"  # head turned to full profile: HOG misses it, Haar profile finds it
NOFACE = "fjas0/fjas0_2115.jpg"  # head bowed, only hair visible: no detector finds a face
TILTED = "fjas0/fjas0_2021.jpg"  # head tilted far back: only the CNN (upsampled) finds it


@pytest.fixture(scope="module")
def vid(dataset):
    root = dataset("vidtimit14")
    return lambda rel: root / rel


def _inside(box, shape, slack=0.25):
    x, y, w, h = box
    H, W = shape[:2]
    return -slack * w <= x and -slack * h <= y and x + w <= W * (1 + slack) and y + h <= H * (1 + slack) and w > 30


def test_no_face_in_blank_image_any_backend():
    blank = np.full((192, 256, 3), (30, 40, 120), np.uint8)
    for det in ("opencv", "dlib", "cascade"):
        assert detect_faces(blank, detector=det) == []
        assert extract_faces(blank, detect="all", detector=det) == []
    with pytest.raises(NoFaceError, match="blank.png.*no face"):
        extract_faces(blank, detect="always", source="blank.png")


def test_unknown_detector():
    with pytest.raises(ConfigError, match="detector"):
        detect_faces(np.zeros((50, 50, 3), np.uint8), detector="magic")
    with pytest.raises(ConfigError, match="detector"):
        load_crops([], detect="always", detector="magic")
    assert "cascade" in DETECTORS


def test_dlib_frontal_with_eye_landmarks(vid):
    img = load_image(vid(FRONTAL))
    (d,) = detect_faces(img, detector="dlib")
    assert _inside(d.box, img.shape) and d.score > 0 and d.detector == "dlib"
    eyes = d.landmarks
    assert eyes is not None and eyes.shape == (2, 2) and eyes[0, 0] < eyes[1, 0]
    x, y, w, h = d.box
    assert x < eyes[:, 0].min() and eyes[:, 0].max() < x + w and y < eyes[:, 1].min() < y + h / 2 + 5
    (crop,) = extract_faces(img, detect="always", detector="dlib", source="f.jpg")
    assert crop.image.shape == (60, 60, 3) and crop.landmarks is not None


def test_profile_needs_the_profile_cascade_both_sides(vid):
    img = load_image(vid(PROFILE))
    assert detect_faces(img, detector="dlib") == []
    prof = detect_faces(img, detector="opencv-profile")
    assert prof and _inside(prof[0].box, img.shape)
    mirrored = np.ascontiguousarray(img[:, ::-1])
    prof_m = detect_faces(mirrored, detector="opencv-profile")
    assert prof_m, "the profile cascade must also run on the mirror image"
    # the mirrored box mirrors the original box (within a few pixels)
    x, y, w, h = prof[0].box
    xm, ym, wm, hm = prof_m[0].box
    assert abs((x + w / 2) - (img.shape[1] - (xm + wm / 2))) < 12 and abs(y - ym) < 12
    (crop,) = extract_faces(img, detect="largest", detector="cascade")
    assert crop.image.shape == (60, 60, 3)


def test_no_face_policies_name_the_file(vid):
    p = vid(NOFACE)
    with pytest.raises(NoFaceError, match="fjas0_2115.jpg"):
        extract_faces(p, detect="always")
    assert extract_faces(p, detect="all") == []


def test_exif_rotated_photo_is_detected_upright(vid, tmp_path):
    img = Image.open(vid(FRONTAL))
    stored = img.transpose(Image.Transpose.ROTATE_90)  # pixels stored turned 90° counter-clockwise
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display" -> upright again
    p = tmp_path / "rotated.jpg"
    stored.save(p, quality=95, exif=exif.tobytes())
    raw = np.asarray(Image.open(p).convert("RGB"))
    assert raw.shape[:2] == (256, 192)
    assert detect_faces(raw, detector="dlib") == []  # sideways face: not found without the tag
    (crop,) = extract_faces(p, detect="always", detector="dlib")
    assert crop.landmarks is not None


def test_large_photo_is_downscaled_for_detection(vid):
    img = load_image(vid(FRONTAL))
    import cv2

    big = cv2.resize(img, (1024, 768), interpolation=cv2.INTER_CUBIC)
    (small_d,) = detect_faces(img, detector="dlib")
    (big_d,) = detect_faces(big, detector="dlib")
    assert np.allclose(np.array(big_d.box) / 4, small_d.box, atol=8)


def test_load_crops_cache_and_bad_files(vid, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    paths = [vid(FRONTAL), empty, vid(NOFACE), vid(PROFILE)]
    cache_dir = tmp_path / "cache"
    first = load_crops(paths, detect="always", cache_dir=cache_dir, progress=True)
    assert [o.status for o in first] == ["ok", "bad_image", "no_face", "ok"]
    assert "fjas0_2115.jpg" in str(first[2].error)
    entries = sorted(cache_dir.rglob("*.npz"))
    assert len(entries) == 3  # two faces + one cached "no face"
    again = load_crops(paths, detect="always", cache_dir=cache_dir)
    assert [o.status for o in again] == ["ok", "bad_image", "no_face", "ok"]
    np.testing.assert_array_equal(again[0].crop.image, first[0].crop.image)
    assert again[0].crop.box == first[0].crop.box and again[0].crop.source == str(vid(FRONTAL))
    # the cache is really read: overwrite the frontal entry with a marker crop
    cache = CropCache(cache_dir)
    params = {"detect": "always", "detector": "cascade", "size": 60, "margin": 0.2}
    key = cache.key(vid(FRONTAL).read_bytes(), params)
    marker = first[0].crop.__class__(np.full((60, 60, 3), 7, np.uint8), (1, 2, 3, 4), 0.5, None, "")
    cache.put(key, [marker])
    hit = load_crops([vid(FRONTAL)], detect="always", cache_dir=cache_dir)[0]
    assert (hit.crop.image == 7).all() and hit.crop.box == (1, 2, 3, 4)
    # a corrupt entry is recomputed, not fatal
    cache._path(key).write_bytes(b"garbage")
    fixed = load_crops([vid(FRONTAL)], detect="always", cache_dir=cache_dir)[0]
    np.testing.assert_array_equal(fixed.crop.image, first[0].crop.image)
    # other parameters miss the cache
    other = load_crops([vid(FRONTAL)], detect="always", size=32, cache_dir=cache_dir)[0]
    assert other.crop.image.shape == (32, 32, 3)


def test_every_backend_finds_the_frontal_face(vid):
    img = load_image(vid(FRONTAL))
    (ref,) = detect_faces(img, detector="dlib")
    for det in ("opencv", "opencv-frontal", "dlib-cnn", "cascade"):
        found = detect_faces(img, detector=det)
        assert found, det
        x, y, w, h = found[0].box
        rx, ry, rw, rh = ref.box
        # normalised boxes agree with dlib's within a fraction of the face size
        assert abs((x + w / 2) - (rx + rw / 2)) < 0.25 * rw and abs((y + h / 2) - (ry + rh / 2)) < 0.3 * rh, det
        assert 0.6 < w / rw < 1.6, det


def test_cascade_falls_back_to_the_cnn_only_when_the_fast_stages_find_nothing(vid):
    img = load_image(vid(TILTED))
    for det in ("dlib", "opencv"):
        assert detect_faces(img, detector=det) == [], det
    (d,) = detect_faces(img, detector="cascade")
    assert d.detector == "dlib-cnn-fallback" and d.score > 0 and _inside(d.box, img.shape)
    (crop,) = extract_faces(img, detect="largest", detector="cascade")
    assert crop.image.shape == (60, 60, 3)
    # a frontal face never reaches the slow stage
    (f,) = detect_faces(load_image(vid(FRONTAL)), detector="cascade")
    assert f.detector == "dlib"


def test_cascade_fast_never_runs_the_cnn_and_the_service_uses_it(vid, monkeypatch):
    """`cascade-fast` (the REST service's detector) stops before the seconds-long CNN stage: an
    upload without a face stays cheap. Same fast stages as `cascade` otherwise."""
    pytest.importorskip("dlib")
    from hybridface.faces import detect as det_mod
    from hybridface.options import DEFAULTS

    img = load_image(vid(TILTED))
    assert DEFAULTS.service_detector == "cascade-fast" and DEFAULTS.detector == "cascade"

    def no_cnn(*a, **k):
        raise AssertionError("the CNN stage ran")

    monkeypatch.setattr(det_mod, "_dlib_cnn", no_cnn)
    assert detect_faces(img, detector="cascade-fast") == []
    assert detect_faces(np.full((240, 320, 3), 128, np.uint8), detector="cascade-fast") == []
    (f,) = detect_faces(load_image(vid(FRONTAL)), detector="cascade-fast")
    assert f.detector == "dlib"
    with pytest.raises(AssertionError, match="the CNN stage ran"):
        detect_faces(img, detector="cascade")


def test_the_service_crops_uploads_with_the_fast_cascade(tmp_path, monkeypatch):
    """The REST backend's `faces` never reaches the CNN stage on an upload without a face."""
    pytest.importorskip("dlib")
    import cv2

    from hybridface.faces import detect as det_mod
    from hybridface.service.backend import GalleryService
    from hybridface.service.limits import ServiceSettings

    def no_cnn(*a, **k):
        raise AssertionError("the CNN stage ran")

    monkeypatch.setattr(det_mod, "_dlib_cnn", no_cnn)
    ok, png = cv2.imencode(".png", np.full((240, 320, 3), 128, np.uint8))
    from hybridface.errors import NoFaceError

    svc = GalleryService(tmp_path / "g.db", ServiceSettings())
    with pytest.raises(NoFaceError, match="no face found by detector 'cascade-fast'"):
        svc.faces([("blank.png", png.tobytes())], "largest")


def test_opencv_detectors_import_dlib_only_to_add_eyes(vid):
    """dlib is imported by the OpenCV back-ends only when a frontal face was found and eyes were
    asked for; the profile cascade and empty images never load it (core-only runtime)."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("dlib")
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from hybridface.faces.detect import detect_faces
        from hybridface.faces.io import load_image
        img = load_image({str(vid(FRONTAL))!r})
        blank = np.full((192, 256, 3), 128, np.uint8)
        assert detect_faces(img, detector="opencv-profile") is not None
        assert detect_faces(blank, detector="opencv") == []
        assert detect_faces(blank, detector="opencv-frontal") == []
        assert detect_faces(img, detector="opencv-frontal", landmarks=False)
        assert "dlib" not in sys.modules, "dlib imported without being asked for"
        (d,) = detect_faces(img, detector="opencv-frontal")
        assert d.landmarks is not None and "dlib" in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
