"""Decode any image file or byte string into an ``(H, W, 3)`` uint8 RGB array.

Pillow does the decoding. The outcome of every awkward input is defined:

* zero-byte, truncated or non-image data → :class:`~hybridface.errors.ImageDecodeError` naming the file;
* more than ``max_pixels`` pixels (decompression bomb) → ``ImageDecodeError`` *before* the pixels
  are decoded (only the header is read);
* EXIF orientation tag → applied (``ImageOps.exif_transpose``);
* 16-bit grey (``I;16``/``I``) → scaled to 8 bits (``>> 8``), float images clipped to 0..255;
* palette, LA, CMYK, RGBA, 1-bit → RGB (alpha dropped); grey → three equal channels.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np

from hybridface.errors import ImageDecodeError

#: File extensions read as images (dataset scans, folders of frames, the CLI's folder arguments).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif", ".tiff", ".webp"})


def natural_key(path: Path | str) -> tuple:
    """Sort key that orders embedded numbers numerically (``f_9`` before ``f_10``)."""
    name = Path(path).name
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t)


__all__ = ["IMAGE_EXTENSIONS", "DEFAULT_MAX_PIXELS", "load_image", "natural_key"]

DEFAULT_MAX_PIXELS = 40_000_000


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _plain(exc: BaseException) -> str:
    """An exception's text without object reprs (PIL names ``<_io.BytesIO object at 0x...>``)."""
    return _OBJECT_REPR.sub("the data", str(exc))


def _name(source: str | Path | bytes) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _to_rgb(img) -> np.ndarray:
    """Convert an opened (and transposed) Pillow image to uint8 RGB."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if mode == "I":
            # 32-bit int: PNG 16-bit grey comes in as "I" with values 0..65535.
            top = 65535 if arr.max(initial=0) > 255 else 255
        else:
            top = 65535
        arr = np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float64), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("RGBA", "LA", "PA") or img.mode in ("RGBA", "LA", "PA"):
        # Composite on black would hide dark content; drop alpha (the colour channels are the image).
        img = img.convert("RGBA").convert("RGB")
    if img.mode in ("L", "1"):
        arr = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _decode_opencv(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode with OpenCV when Pillow is not installed (no EXIF rotation; same size limit)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageDecodeError(f"{name}: not a readable image (OpenCV could not decode it); "
                               "supported are JPEG, PNG, PGM, BMP, TIFF, WebP")
    h, w = img.shape[:2]
    if w * h > max_pixels:
        raise ImageDecodeError(f"{name}: image is {w}x{h} = {w * h:,} pixels, more than the limit of "
                               f"{max_pixels:,} (possible decompression bomb); downscale it or raise max_pixels")
    return np.ascontiguousarray(img[:, :, ::-1])


def load_image(
    source: str | Path | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Read ``source`` (path or encoded bytes) into an ``(H, W, 3)`` uint8 RGB array.

    Raises :class:`ImageDecodeError` for missing, empty, truncated, non-image or oversized
    (> ``max_pixels``) input; the message names ``name`` (default: the path, or ``<bytes>``).
    """
    name = name or _name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ImageDecodeError(f"{name}: file not found; check the path") from exc
        except IsADirectoryError as exc:
            raise ImageDecodeError(f"{name}: is a directory, not an image file") from exc
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot read file ({exc})") from exc
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes); it is not an image, re-export or remove it")
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:  # a core-only install (device bundle): numpy, onnxruntime, opencv
        return _decode_opencv(data, name, max_pixels)

    try:
        with warnings.catch_warnings():
            # Our explicit check below is the guard; Pillow's own (Image.MAX_IMAGE_PIXELS, a
            # warning above it and DecompressionBombError above twice it) stays as a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: reads the header only
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(
                    f"{name}: image is {w}x{h} = {w * h:,} pixels, more than the limit of "
                    f"{max_pixels:,} (possible decompression bomb); downscale it or raise max_pixels"
                )
            if w == 0 or h == 0:
                raise ImageDecodeError(f"{name}: image has zero width or height")
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"{name}: image too large (possible decompression bomb: {_plain(exc)}); downscale it"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"{name}: not a readable image ({type(exc).__name__}: {_plain(exc)}); "
            "supported are JPEG, PNG, PGM, BMP, TIFF, WebP"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(
            f"{name}: corrupt or truncated image ({type(exc).__name__}: {_plain(exc)}); re-export or remove the file"
        ) from exc
