"""extract_faces / load_crops: policies, crop geometry, batch behaviour and the cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hybridface.errors import ConfigError, ImageDecodeError
from hybridface.faces.crop import FaceCrop, extract_faces, load_crops, square_crop


def test_never_centre_square_60x60():
    img = np.zeros((192, 168, 3), np.uint8)
    img[12:180, :] = 200  # the centre 168x168 square is bright, the top/bottom 12 rows dark
    (crop,) = extract_faces(img, detect="never", source="yale.png")
    assert isinstance(crop, FaceCrop)
    assert crop.image.shape == (60, 60, 3) and crop.image.dtype == np.uint8
    assert crop.box == (0, 12, 168, 168) and crop.source == "yale.png" and crop.landmarks is None
    assert (crop.image == 200).all()


def test_never_grey_and_path(tmp_path):
    g = np.tile(np.arange(50, dtype=np.uint8), (80, 1))
    p = tmp_path / "g.png"
    Image.fromarray(g).save(p)
    (crop,) = extract_faces(p, detect="never", size=25)
    assert crop.image.shape == (25, 25, 3)
    assert (crop.image[:, :, 0] == crop.image[:, :, 2]).all()
    assert crop.source == str(p)


def test_square_crop_margin_and_border():
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 40:60] = 255
    out = square_crop(img, (40, 40, 20, 20), size=20, margin=0.0)
    assert (out == 255).all()
    out = square_crop(img, (40, 40, 20, 20), size=40, margin=0.5)  # 40x40 window, box in the middle
    assert (out[10:30, 10:30] == 255).all() and (out[:8] == 0).all()
    edge = square_crop(img, (-10, -10, 30, 30), size=30, margin=0.2)  # off the image: padded
    assert edge.shape == (30, 30, 3)


def test_square_crop_levels_the_eyes():
    img = np.zeros((100, 100, 3), np.uint8)
    # a tilted bar through the "eyes" at (30,40) and (70,60): after levelling it is horizontal
    import cv2

    cv2.line(img, (30, 40), (70, 60), (255, 255, 255), 3)
    lm = np.array([[30, 40], [70, 60]], np.float32)
    out = square_crop(img, (20, 20, 60, 60), size=60, margin=0.0, landmarks=lm)
    rows = np.nonzero(out[:, :, 0].max(axis=1) > 128)[0]
    assert rows.max() - rows.min() <= 6  # horizontal bar: only a few rows lit


def test_bad_options():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ConfigError, match="detect"):
        extract_faces(img, detect="maybe")
    with pytest.raises(ConfigError, match="size"):
        extract_faces(img, size=0)
    with pytest.raises(ImageDecodeError):
        extract_faces(np.zeros((0, 5, 3), np.uint8))


def test_load_crops_never_batch_goes_on(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 30), 90, np.uint8)).save(good)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.jpg"
    junk.write_text("hello")
    out = load_crops([good, empty, junk, tmp_path / "missing.png", good], detect="never")
    assert [o.status for o in out] == ["ok", "bad_image", "bad_image", "bad_image", "ok"]
    assert out[0].crop.image.shape == (60, 60, 3)
    assert out[4] is out[0]  # a repeated path is cropped once
    assert "empty.png" in str(out[1].error) and "junk.jpg" in str(out[2].error)


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    box=st.tuples(st.floats(-50, 120), st.floats(-50, 120), st.floats(1, 150), st.floats(1, 150)),
    margin=st.floats(0, 1),
    eyes=st.one_of(st.none(), st.tuples(st.floats(0, 90), st.floats(0, 90), st.floats(0, 90), st.floats(0, 90))),
)
def test_square_crop_always_gives_size_x_size(h, w, box, margin, eyes):
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    lm = None if eyes is None else np.array(eyes, np.float32).reshape(2, 2)
    out = square_crop(img, box, size=60, margin=margin, landmarks=lm)
    assert out.shape == (60, 60, 3) and out.dtype == np.uint8
    (c,) = extract_faces(img, detect="never")
    assert c.image.shape == (60, 60, 3)


def test_extract_faces_from_bytes(tmp_path):
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(buf, format="PNG")
    (c,) = extract_faces(buf.getvalue(), detect="never", source="upload.png")
    assert c.source == "upload.png" and c.box == (10, 0, 50, 50)
    with pytest.raises(ImageDecodeError, match="upload.bin"):
        extract_faces(b"junk", detect="never", source="upload.bin")


def test_cached_batch_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    (o,) = load_crops([empty], detect="never", cache_dir=tmp_path / "c")
    assert o.status == "bad_image" and "empty.png" in str(o.error)
