"""Live video identification: faces detected, tracked and identified by voting, as a stream of events.

``watch(gallery, source, ...)`` (or ``Gallery.watch(source, ...)``) opens the source
(:mod:`hybridface.faces.video`), checks the gallery and options, and returns a :class:`Watch`;
iterating it yields :class:`WatchEvent` records:

``stream_start``  the source opened (``message``: what it is, size, fps).
``track_start``   a new face appeared (``box``: its first detection).
``identified``    a track's vote reached a decision, or changed it (``identity``, ``distance``: the
                  median distance of the frames that voted for it).
``track_end``     a face left, the video ended or the watch was stopped (final identity or ``null``).
``frame_skipped`` a frame that cannot be used (unreadable, wrong size), with the reason.
``stream_end``    the end: ``reason`` = ``eof`` | ``dropped`` | ``interrupted`` | ``max_frames``.

Every frame a track is seen in (detected, or followed by template matching between detections)
is cropped, encoded and searched (k = 1). A frame votes for the nearest identity when its
distance is within the open-set threshold, else for "unknown". A track is identified once its
leading identity has ``min_votes`` votes and at least ``min_share`` of all its votes; a later
leader that meets the same rule replaces it (an identity switch, reported as another ``identified``).
Every ``track_start`` gets its ``track_end``, also on Ctrl-C (KeyboardInterrupt inside the loop, or
``stop()`` from another thread / a signal handler) and when the stream drops.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, EmptyGalleryError, SourceError
from hybridface.faces.track import Track, Tracker

__all__ = ["Watch", "WatchEvent", "watch", "SEARCH_KEYS"]

log = logging.getLogger(__name__)

#: Keywords of ``Gallery.identify_vectors`` that ``watch`` passes through.
SEARCH_KEYS = ("strategy", "top_n", "workers", "engine", "address", "cells", "probe_cells", "storage")
_COLOURS = {"known": (40, 200, 40), "unknown": (0, 170, 255)}  # RGB


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch; ``to_dict()`` is the JSONL line."""

    event: str
    time: float
    frame: int
    track: int | None = None
    box: tuple[int, int, int, int] | None = None
    identity: str | None = None
    distance: float | None = None
    frames: int = 0
    reason: str | None = None
    message: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time"] = round(self.time, 3)
        d["box"] = list(self.box) if self.box is not None else None
        d["distance"] = None if self.distance is None else round(self.distance, 4)
        if self.track is None:
            for key in ("track", "box", "identity", "distance"):
                d.pop(key)
        if self.reason is None:
            d.pop("reason")
        if self.message is None:
            d.pop("message")
        return d


class _Votes:
    """Per-track ballot: distances per voted name (``None`` = unknown) and the current decision."""

    def __init__(self) -> None:
        self.by_name: dict[str | None, list[float]] = {}
        self.total = 0
        self.identity: str | None = None

    def add(self, name: str | None, distance: float) -> None:
        self.by_name.setdefault(name, []).append(float(distance))
        self.total += 1

    def decide(self, min_votes: int, min_share: float) -> str | None:
        """The leading identity if it meets the rule, else the current decision (kept)."""
        named = [(len(v), n) for n, v in self.by_name.items() if n is not None]
        if named:
            count, name = max(named, key=lambda c: (c[0], -min(self.by_name[c[1]])))
            if name != self.identity and count >= min_votes and count >= min_share * self.total:
                if self.identity is None or count > len(self.by_name.get(self.identity, ())):
                    self.identity = name
        return self.identity

    def distance(self) -> float | None:
        vals = self.by_name.get(self.identity) if self.identity is not None else \
            [d for v in self.by_name.values() for d in v]
        return float(statistics.median(vals)) if vals else None


def _box(t: Track) -> tuple[int, int, int, int]:
    return tuple(int(round(v)) for v in t.box)  # type: ignore[return-value]


class Watch:
    """An opened watch: iterate once for its events; ``stop()`` ends it cleanly from outside."""

    def __init__(self, gallery, source, *, every: int, detector: str, max_fps: float | None,
                 threshold: float | None, min_votes: int, min_share: float, max_missed: int | None,
                 annotate: str | None, max_frames: int | None, search: dict,
                 on_frame: Callable[[int, float], None] | None) -> None:
        self.gallery, self.source, self.search, self.on_frame = gallery, source, search, on_frame
        self.every, self.detector, self.max_fps, self.max_frames = every, detector, max_fps, max_frames
        self.threshold, self.min_votes, self.min_share, self.annotate = threshold, min_votes, min_share, annotate
        # a new face is reported after 3 detections (2 when detection runs only every k-th frame)
        self.tracker = Tracker(max_missed=max_missed if max_missed is not None else max(10, 3 * every),
                               min_hits=3 if every == 1 else 2)
        self.frames_done = 0
        self.fps_ = 0.0
        self._stop = threading.Event()
        self._votes: dict[int, _Votes] = {}
        self._writer = None

    def stop(self) -> None:
        """Ask the loop to end after the current frame (safe from a signal handler or another thread)."""
        self._stop.set()

    # -- per frame
    def _identify(self, rgb: np.ndarray, tracks: list[Track]) -> list[tuple[str | None, float]]:
        from hybridface.faces.crop import square_crop
        from hybridface.prepare import crop_size, encode_crops

        enc = self.gallery.encoder
        size = crop_size(enc)
        crops = [square_crop(rgb, t.box, size=size, margin=0.2, landmarks=t.landmarks) for t in tracks]
        vecs = encode_crops(enc, crops)
        found = self.gallery.identify_vectors(vecs, k=1, threshold=self.threshold, **self.search)
        return [(a.identity, a.distance) for a in found]

    def _draw(self, frame) -> None:
        import cv2

        if self.annotate is None:
            return
        img = frame.image.copy()
        for t in self.tracker.tracks_:
            if not t.id:
                continue
            name = self._votes[t.id].identity
            colour = _COLOURS["known" if name else "unknown"]
            x, y, w, h = _box(t)
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, 2)
            cv2.putText(img, f"{t.id}: {name or '?'}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        colour, 1, cv2.LINE_AA)
        if self._writer is None:
            h, w = img.shape[:2]
            fps = self.source.fps or (self.max_fps or 25.0)
            self._writer = cv2.VideoWriter(self.annotate, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            if not self._writer.isOpened():
                out, self._writer, self.annotate = self.annotate, None, None
                raise SourceError(f"{out}: cannot write an annotated video there (check the folder and the .mp4 name)")
        self._writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def _end(self, t: Track, frame: int, when: float) -> WatchEvent:
        v = self._votes.pop(t.id)
        return WatchEvent("track_end", when, frame, t.id, _box(t), v.identity, v.distance(), t.frames)

    def _frame_events(self, frame, detect_now: bool) -> Iterator[WatchEvent]:
        import cv2

        from hybridface.faces.detect import detect_faces

        rgb = frame.image
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        dets = detect_faces(rgb, detector=self.detector) if detect_now else None
        started, ended = self.tracker.update(grey, frame.index, dets)
        for t in ended:
            yield self._end(t, frame.index, frame.time)
        for t in started:
            self._votes[t.id] = _Votes()
            yield WatchEvent("track_start", frame.time, frame.index, t.id, _box(t), None, None, t.frames)
        seen = [t for t in self.tracker.tracks_ if t.id and t.last_frame == frame.index]
        if seen:
            for t, (name, dist) in zip(seen, self._identify(rgb, seen)):
                v = self._votes[t.id]
                if dist is None:
                    continue
                before = v.identity
                v.add(name, dist)
                if v.decide(self.min_votes, self.min_share) != before:
                    yield WatchEvent("identified", frame.time, frame.index, t.id, _box(t), v.identity,
                                     v.distance(), t.frames)
        self._draw(frame)

    def __iter__(self) -> Iterator[WatchEvent]:
        src = self.source
        t0 = time.perf_counter()
        last = None
        frame_no, when, reason, message = -1, 0.0, "eof", None
        yield WatchEvent("stream_start", 0.0, 0, message=(
            f"{src.kind} {src.spec}" + (f", {src.fps:g} fps" if src.fps else "")
            + (f", {src.frame_count} frames" if src.frame_count else "")))
        frames = iter(src)
        try:
            for frame in frames:
                frame_no, when = frame.index, frame.time
                if self._stop.is_set():
                    reason = "interrupted"
                    break
                if frame.image is None:
                    yield WatchEvent("frame_skipped", frame.time, frame.index, message=frame.problem)
                    continue
                if self.max_fps:
                    gap = 1.0 / self.max_fps - (time.perf_counter() - last if last is not None else 1e9)
                    if gap > 0:
                        if src.live:
                            continue  # a camera runs on: drop frames rather than fall behind
                        time.sleep(gap)
                last = time.perf_counter()
                yield from self._frame_events(frame, detect_now=self.frames_done % self.every == 0)
                self.frames_done += 1
                self.fps_ = self.frames_done / max(time.perf_counter() - t0, 1e-9)
                if self.on_frame is not None:
                    self.on_frame(frame.index, self.fps_)
                if self.max_frames is not None and self.frames_done >= self.max_frames:
                    reason = "max_frames"
                    break
            else:
                if src.end_reason == "dropped":
                    reason, message = "dropped", src.end_message
            if self._stop.is_set() and reason == "eof":
                reason = "interrupted"
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            src.close()
            if self._writer is not None:
                self._writer.release()
                self._writer = None
        for t in self.tracker.close():
            if t.id:
                yield self._end(t, max(frame_no, 0), when)
        yield WatchEvent("stream_end", when, max(frame_no, 0), frames=self.frames_done, reason=reason,
                         message=message or f"{self.frames_done} frames at {self.fps_:.1f} fps")


def watch(gallery, source, *, every: int = 1, detector: str | None = None, max_fps: float | None = None,
          threshold: float | None = None, min_votes: int = 3, min_share: float = 0.5,
          max_missed: int | None = None, annotate: str | None = None, max_frames: int | None = None,
          on_frame: Callable[[int, float], None] | None = None, **search) -> Watch:
    """Open ``source`` and check everything a watch needs; iterate the returned :class:`Watch` for events.

    Raises (before any event) :class:`~hybridface.errors.SourceError` for a source that cannot be
    opened, :class:`~hybridface.errors.EmptyGalleryError` for a gallery without templates and
    :class:`~hybridface.errors.ConfigError` for bad options. ``search``: the keywords of
    ``Gallery.identify_vectors`` (``strategy``, ``top_n``, ``workers``, ``cells``, ...).
    ``detector``: ``None`` = dlib's HOG detector (≈5 ms per 256x192 frame), or OpenCV's Haar
    cascades where dlib is not installed.
    """
    import importlib.util

    from hybridface.faces.detect import DETECTORS
    from hybridface.faces.video import open_source

    bad = sorted(set(search) - set(SEARCH_KEYS))
    if bad:
        raise ConfigError(f"watch does not take {', '.join(bad)}; search options are {', '.join(SEARCH_KEYS)}")
    if int(every) < 1:
        raise ConfigError(f"every={every}: detect on every frame (1) or every k-th frame (k > 1)")
    if max_fps is not None and not float(max_fps) > 0:
        raise ConfigError(f"max_fps={max_fps} must be > 0 frames per second")
    if int(min_votes) < 1 or not 0.0 < float(min_share) <= 1.0:
        raise ConfigError(f"min_votes={min_votes} must be >= 1 and min_share={min_share} in (0, 1]")
    if max_frames is not None and int(max_frames) < 1:
        raise ConfigError(f"max_frames={max_frames} must be >= 1")
    if detector is None:
        detector = "dlib" if importlib.util.find_spec("dlib") is not None else "opencv"
    if detector not in DETECTORS:
        raise ConfigError(f"detector={detector!r} is not known; use one of {', '.join(DETECTORS)}")
    if not any(count for _, count in gallery.identities()):
        raise EmptyGalleryError(f"gallery {gallery.path} has no templates: enrol people before watching")
    if annotate is not None and not Path(annotate).resolve().parent.is_dir():
        raise ConfigError(f"--annotate {annotate}: the folder {Path(annotate).resolve().parent} does not exist")
    gallery.searcher(**search)  # bad search options and an unreachable engine fail here
    gallery.encoder  # noqa: B018 - loads the model now and checks it matches the gallery
    src = open_source(source)
    return Watch(gallery, src, every=int(every), detector=detector, max_fps=max_fps, threshold=threshold,
                 min_votes=int(min_votes), min_share=float(min_share), max_missed=max_missed, annotate=annotate,
                 max_frames=max_frames, search=search, on_frame=on_frame)
