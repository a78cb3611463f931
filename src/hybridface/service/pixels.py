"""Decoded-pixel budgets, checked from image headers before anything is decoded.

A small compressed upload can decode to gigabytes (a 5000x5000 PNG of one colour is a few KB).
`request_pixels` reads every upload's width and height from its header (Pillow's lazy ``open``
decodes no pixel data) and refuses a request whose total exceeds its budget; `PixelBudget`
bounds the pixels being decoded at once across all requests of one server, so peak memory is
about idle + ``max_server_pixels`` x (bytes per decoded pixel) whatever the clients send.
"""

from __future__ import annotations

import io
import threading
import time
import warnings

from hybridface.errors import HybridFaceError, ImageDecodeError


class PixelBudgetError(HybridFaceError):
    """A request holds more image pixels than one request may decode."""

    http_status = 422
    code = "too_many_pixels"


class PixelBudgetBusyError(HybridFaceError):
    """The server's decode budget stayed taken for longer than the queue timeout."""

    http_status = 503
    code = "busy"


def image_pixels(name: str, data: bytes) -> int:
    """``width x height`` from the header of one upload; `ImageDecodeError` when it has none."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        # Not an image Pillow can size: decoding it fails the same way, with the decoder's message.
        from hybridface.faces.io import load_image

        load_image(data, max_pixels=1)  # raises ImageDecodeError naming "<bytes>"
        raise ImageDecodeError(f"{name!r}: not a readable image")  # pragma: no cover
    return int(w) * int(h)


def request_pixels(blobs: list[tuple[str, bytes]], *, budget: int, max_pixels: int) -> list[int]:
    """Each upload's pixel count; `ImageDecodeError` for an image over ``max_pixels`` (a bomb),
    `PixelBudgetError` when their sum is over ``budget``. Nothing is decoded."""
    from hybridface.faces.io import load_image

    sizes = []
    for name, data in blobs:
        try:
            n = image_pixels(name, data)
            if n > max_pixels:
                load_image(data, max_pixels=max_pixels)  # refuses from the header, with its message
            sizes.append(n)
        except ImageDecodeError as exc:
            raise ImageDecodeError(str(exc).replace("<bytes>", repr(name))) from exc
    total = sum(sizes)
    if total > budget:
        raise PixelBudgetError(
            f"the {len(blobs)} image(s) of this request hold {total:,} pixels, more than the limit of {budget:,} "
            "per request; send fewer or smaller images"
        )
    return sizes


class PixelBudget:
    """A counting budget of pixels shared by every worker thread of one server."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.in_use = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, *, timeout: float) -> int:
        """Reserve ``min(n, capacity)`` pixels (waiting up to ``timeout`` s); return what was reserved."""
        n = min(int(n), self.capacity)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.in_use + n > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PixelBudgetBusyError("the server is decoding as many pixels as it may; retry shortly")
                self._cond.wait(left)
            self.in_use += n
            self.peak = max(self.peak, self.in_use)
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self.in_use -= int(n)
            self._cond.notify_all()
