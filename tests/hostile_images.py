"""A deterministic corpus of hostile image uploads for the service fuzz tests.

``malformed(n)`` yields ``(label, bytes)`` that are not decodable images (or declare more pixels
than any limit); ``odd_but_valid()`` yields unusual but legal images (16-bit, CMYK, animated
GIF, palette, 1-bit, 1x1) that must decode.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np


def _encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def base_images() -> dict[str, bytes]:
    from PIL import Image

    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    return {
        "jpeg": _encode(rgb, "JPEG", quality=90),
        "png": _encode(rgb, "PNG"),
        "gif": _encode(rgb.convert("P"), "GIF"),
        "bmp": _encode(rgb, "BMP"),
        "tiff": _encode(rgb, "TIFF"),
        "webp": _encode(rgb, "WEBP"),
    }


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(w: int = 100_000, h: int = 100_000) -> bytes:
    """A valid PNG header declaring ``w x h`` with a tiny (deflate-bomb style) body."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def huge_jpeg(base: bytes, w: int = 65_000, h: int = 65_000) -> bytes:
    """Patch the SOF0 frame size of a baseline JPEG."""
    i = base.find(b"\xff\xc0")
    if i < 0:
        return base
    return base[: i + 5] + struct.pack(">HH", h, w) + base[i + 9:]


def huge_gif(w: int = 65_535, h: int = 65_535) -> bytes:
    """A GIF whose logical screen is ``w x h`` (a frame of 1x1)."""
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0)
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00\x3b")


def huge_bmp(w: int = 60_000, h: int = 60_000) -> bytes:
    header = b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\0" * 16


def malformed(n: int = 450, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` inputs that must each be refused with a 4xx (never decoded as a face)."""
    rng = np.random.default_rng(seed)
    bases = base_images()
    fixed: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("zeros-1", b"\0"),
        ("zeros-4k", b"\0" * 4096),
        ("text", b"hello, I am not an image\n"),
        ("html", b"<html><body><img src=x onerror=alert(1)></body></html>"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>'),
        ("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"),
        ("png-magic-only", b"\x89PNG\r\n\x1a\n"),
        ("jpeg-magic-only", b"\xff\xd8\xff"),
        ("gif-magic-only", b"GIF89a"),
        ("huge-png", huge_png()),
        ("huge-png-wide", huge_png(2**31 - 1, 1)),
        ("huge-jpeg", huge_jpeg(bases["jpeg"])),
        ("huge-gif", huge_gif()),
        ("huge-bmp", huge_bmp()),
        ("zero-size-png", huge_png(0, 0)),
    ]
    out = list(fixed)
    kinds = sorted(bases)
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        data = bases[kind]
        mode = len(out) % 3
        if mode == 0:  # random bytes, sometimes behind a real magic number
            junk = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
            out.append((f"random-{kind}", (data[:8] if rng.random() < 0.5 else b"") + junk))
        elif mode == 1:  # truncated inside the header (no pixels can be read)
            cut = int(rng.integers(1, min(len(data) - 1, 30)))
            out.append((f"truncated-header-{kind}-{cut}", data[:cut]))
        else:  # header kept, body replaced by garbage of another format / cut hard
            cut = int(rng.integers(len(data) // 4, len(data) // 2))
            out.append((f"truncated-body-{kind}-{cut}", data[:cut]))
    return out[:n]


def corrupted(n: int = 60, seed: int = 1) -> list[tuple[str, bytes]]:
    """Valid files with a few flipped bytes: each must answer < 500 (decoded or 4xx)."""
    rng = np.random.default_rng(seed)
    bases = base_images()
    out = []
    for i in range(n):
        kind = sorted(bases)[i % len(bases)]
        data = bytearray(bases[kind])
        for _ in range(int(rng.integers(1, 8))):
            pos = int(rng.integers(0, len(data)))
            data[pos] = int(rng.integers(0, 256))
        out.append((f"flipped-{kind}-{i}", bytes(data)))
    return out


def odd_but_valid() -> list[tuple[str, bytes]]:
    """Legal images of unusual kinds; each must decode (a 2xx, or a 4xx about the gallery)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8))
    grey16 = Image.fromarray((rng.integers(0, 65536, (50, 50))).astype(np.uint16))
    frames = [Image.fromarray(np.full((40, 40, 3), c, np.uint8)) for c in (0, 128, 255)]
    anim = io.BytesIO()
    frames[0].save(anim, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return [
        ("png-16bit-grey", _encode(grey16, "PNG")),
        ("jpeg-cmyk", _encode(rgb.convert("CMYK"), "JPEG")),
        ("gif-animated", anim.getvalue()),
        ("png-palette", _encode(rgb.convert("P"), "PNG")),
        ("png-rgba", _encode(rgb.convert("RGBA"), "PNG")),
        ("png-1bit", _encode(rgb.convert("1"), "PNG")),
        ("png-1x1", _encode(Image.new("RGB", (1, 1)), "PNG")),
        ("tiff-float", _encode(Image.fromarray(rng.random((20, 20)).astype(np.float32) * 255), "TIFF")),
    ]
