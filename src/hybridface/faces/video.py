"""Video sources for :mod:`hybridface.watch`: a video file, a camera index, an RTSP/HTTP URL
(anything OpenCV's ``VideoCapture`` opens) or a folder of frames read in natural name order.

``open_source(spec)`` checks the source and returns a :class:`FrameSource`; iterating it yields
:class:`Frame` records (RGB uint8) until the source ends. How it ended is kept in
:attr:`FrameSource.end_reason` (``eof`` | ``dropped``) with a message in :attr:`FrameSource.end_message`;
frames that cannot be used (unreadable file, a size other than the first frame's) are yielded as
:class:`Frame` with ``image=None`` and ``problem`` set, so the caller can report them and go on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import SourceError

__all__ = ["Frame", "FrameSource", "open_source", "describe_source"]

log = logging.getLogger(__name__)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
#: A live source that gives no frame for this many consecutive reads has dropped.
LIVE_RETRIES = 25


@dataclass(frozen=True)
class Frame:
    """One frame: its index in the source, its time in seconds, the RGB image (or ``None`` and why)."""

    index: int
    time: float
    image: np.ndarray | None
    name: str = ""
    problem: str | None = None


def describe_source(spec: str | int | Path) -> str:
    """``camera`` | ``url`` | ``folder`` | ``file`` — what kind of source ``spec`` names (no I/O beyond stat)."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return "camera"
    s = str(spec)
    if _URL.match(s):
        return "url"
    return "folder" if Path(s).is_dir() else "file"


class FrameSource:
    """An opened source; iterate it once for its frames. ``close()`` releases it (idempotent)."""

    def __init__(self, spec: str | int | Path, *, kind: str, cap=None, files: list[Path] | None = None,
                 fps: float | None = None, frame_count: int | None = None) -> None:
        self.spec = str(spec)
        self.kind = kind
        self.fps = fps
        self.frame_count = frame_count
        self.size: tuple[int, int] | None = None  # (width, height) of the first frame
        self.end_reason: str | None = None
        self.end_message: str = ""
        self._cap = cap
        self._files = files
        self._t0: float | None = None

    @property
    def live(self) -> bool:
        """Cameras and URLs run in real time; files and folders are read as fast as asked."""
        return self.kind in ("camera", "url")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _time(self, index: int) -> float:
        if self.live or not self.fps:
            if self._t0 is None:
                self._t0 = time.monotonic()
            return time.monotonic() - self._t0
        return index / self.fps

    def _checked(self, index: int, bgr_or_rgb: np.ndarray | None, name: str, rgb: bool) -> Frame:
        import cv2

        t = self._time(index)
        if bgr_or_rgb is None:
            return Frame(index, t, None, name, "unreadable frame")
        img = bgr_or_rgb
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        elif not rgb:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size:
            return Frame(index, t, None, name,
                         f"frame is {w}x{h} but the source started at {self.size[0]}x{self.size[1]}; skipped")
        return Frame(index, t, np.ascontiguousarray(img), name)

    def __iter__(self) -> Iterator[Frame]:
        try:
            if self._files is not None:
                yield from self._folder_frames()
            else:
                yield from self._capture_frames()
        finally:
            self.close()

    def _folder_frames(self) -> Iterator[Frame]:
        import cv2

        for i, f in enumerate(self._files or []):
            try:
                img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            except cv2.error:  # pragma: no cover - OpenCV reports most bad files as None
                img = None
            if img is None:
                yield Frame(i, self._time(i), None, f.name, f"{f.name}: not a readable image; skipped")
                continue
            yield self._checked(i, img, f.name, rgb=False)
        self.end_reason = "eof"

    def _capture_frames(self) -> Iterator[Frame]:
        i, misses = 0, 0
        while self._cap is not None:
            ok, img = self._cap.read()
            if not ok or img is None:
                misses += 1
                if self.live and misses < LIVE_RETRIES:
                    time.sleep(0.02)
                    continue
                break
            misses = 0
            yield self._checked(i, img, f"frame {i}", rgb=False)
            i += 1
        if self.frame_count and i < self.frame_count - 1:
            self.end_reason = "dropped"
            self.end_message = (f"{self.spec}: reading stopped at frame {i} of {self.frame_count}; "
                                + ("the stream dropped" if self.live else "the file is truncated or damaged"))
        elif self.live and not self.frame_count:  # a camera or live stream has no end of its own
            self.end_reason = "dropped"
            self.end_message = f"{self.spec}: the stream gave no frame after frame {i}; it dropped or ended"
        else:
            self.end_reason = "eof"


def open_source(spec: str | int | Path) -> FrameSource:
    """Open a camera index, URL, video file or folder of frames; :class:`SourceError` if it cannot be read."""
    import cv2

    from hybridface.faces.io import IMAGE_EXTENSIONS, natural_key

    kind = describe_source(spec)
    if kind == "folder":
        files = sorted((f for f in Path(spec).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS),
                       key=natural_key)
        if not files:
            raise SourceError(f"{spec}: this folder holds no image files (.jpg, .png, ...) to read as frames")
        return FrameSource(spec, kind=kind, files=files, frame_count=len(files))
    if kind == "file":
        p = Path(spec)
        if not p.exists():
            raise SourceError(f"{spec}: no such file or folder (give a video file, a folder of frames, "
                              "a camera index such as 0, or an rtsp:// or http:// URL)")
        if not p.is_file():
            raise SourceError(f"{spec}: not a regular file")
    cap = cv2.VideoCapture(int(spec) if kind == "camera" else str(spec))
    if not cap.isOpened():
        cap.release()
        what = {"camera": "camera", "url": "stream", "file": "video file"}[kind]
        raise SourceError(f"{spec}: cannot open this {what} with OpenCV"
                          + (" (not a video, or a codec OpenCV lacks)" if kind == "file" else ""))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if 0.5 < fps < 1000 else None
    count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)) if kind != "camera" else 0  # a URL may be a file
    log.info("opened %s %s (fps %s, %s frames)", kind, spec, fps, count or "?")
    return FrameSource(spec, kind=kind, cap=cap, fps=fps, frame_count=count or None)
