"""load_image: every awkward input has a defined outcome (files generated in tmp_path)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hybridface.errors import ImageDecodeError
from hybridface.faces.io import load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def _gradient(w=40, h=30) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - x], axis=2).round().astype(np.uint8)


def test_rgb_png_roundtrip_path_and_bytes(tmp_path):
    arr = _gradient()
    p = _save(Image.fromarray(arr), tmp_path / "a.png")
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(load_image(p.read_bytes()), arr)
    np.testing.assert_array_equal(load_image(str(p)), arr)


def test_grey_becomes_three_equal_channels(tmp_path):
    g = _gradient()[:, :, 0]
    p = _save(Image.fromarray(g, mode="L"), tmp_path / "g.pgm")
    out = load_image(p)
    assert out.shape == (30, 40, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty.jpg.*empty"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_gradient(200, 150)).save(buf, format="JPEG", quality=95)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cut.jpg"):
        load_image(p)


def test_non_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n" * 20)
    with pytest.raises(ImageDecodeError, match="notes.png.*not a readable image"):
        load_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="nope.jpg.*not found"):
        load_image(tmp_path / "nope.jpg")


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG claiming w x h pixels with a tiny (invalid) body: the header alone triggers the check."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_rejected_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))  # 10 G pixels claimed, ~100 bytes on disk
    with pytest.raises(ImageDecodeError, match="bomb.png.*(decompression bomb|too large)"):
        load_image(p)
    # A real (small) image above a lowered limit is refused by the explicit check too.
    q = _save(Image.fromarray(_gradient(100, 100)), tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match="big.png.*100x100 = 10,000 pixels"):
        load_image(q, max_pixels=5_000)
    assert load_image(q, max_pixels=10_000).shape == (100, 100, 3)


def test_sixteen_bit_png_scaled_to_8_bit(tmp_path):
    a16 = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16)
    a16[0, 0], a16[0, 1] = 0, 65535
    p = _save(Image.fromarray(a16), tmp_path / "deep.png")
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    expected = np.round(a16.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 1], expected)
    assert out[0, 1, 0] == 255 and out[0, 0, 0] == 0


def test_palette_and_alpha_images(tmp_path):
    arr = _gradient()
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p = _save(pal, tmp_path / "pal.png")
    out = load_image(p)
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
    g = _save(pal, tmp_path / "pal.gif")
    assert load_image(g).shape == (30, 40, 3)
    rgba = Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 7, np.uint8)]), mode="RGBA")
    np.testing.assert_array_equal(load_image(_save(rgba, tmp_path / "a.png")), arr)
    la = Image.fromarray(arr[:, :, 0]).convert("LA")
    assert load_image(_save(la, tmp_path / "la.png")).shape == (30, 40, 3)


def test_cmyk_jpeg(tmp_path):
    arr = _gradient(64, 48)
    cmyk = Image.fromarray(arr).convert("CMYK")
    p = _save(cmyk, tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr.astype(int)).mean() < 12


def test_exif_orientation_is_honoured(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red, right half blue
    arr[:, 20:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    p = tmp_path / "rot.jpg"
    img.save(p, quality=98, exif=exif.tobytes())
    out = load_image(p)
    assert out.shape == (40, 20, 3)  # width and height swapped
    # After a 90° clockwise turn, the stored left half (red) is on top.
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60
