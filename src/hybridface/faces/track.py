"""Face tracking across video frames: IoU + template similarity, no extra dependency.

:class:`Tracker` keeps the open :class:`Track` s of one video. On a frame with detections,
:meth:`Tracker.update` matches each detection to a track by a score mixing box overlap (IoU) and
the normalised cross-correlation of a small grey template of the face; unmatched detections
start new (tentative) tracks, reported once ``min_hits`` detections confirm them. On frames without detections (``watch --every k``) and for tracks no detection
matched, the face is followed by OpenCV template matching in a window around its last box. A track
ends when no detection has confirmed it for ``max_missed`` frames (it coasts on its last box
while template matching cannot find it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from hybridface.errors import ConfigError

__all__ = ["Track", "Tracker", "iou"]

Box = tuple[float, float, float, float]
#: Side of the grey template compared between detections and tracks.
TEMPLATE_SIDE = 24


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _clip(box: Box, w: int, h: int) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[0] + box[2]))), min(h, int(round(box[1] + box[3])))
    return (x0, y0, x1, y1) if x1 - x0 >= 4 and y1 - y0 >= 4 else None


def _template(grey: np.ndarray, box: Box) -> np.ndarray | None:
    """Zero-mean unit-norm ``TEMPLATE_SIDE``² grey patch of ``box`` (``None`` if off the image)."""
    import cv2

    c = _clip(box, grey.shape[1], grey.shape[0])
    if c is None:
        return None
    patch = cv2.resize(grey[c[1]:c[3], c[0]:c[2]], (TEMPLATE_SIDE, TEMPLATE_SIDE), interpolation=cv2.INTER_AREA)
    v = patch.astype(np.float32).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else None


@dataclass
class Track:
    """One face followed over frames (mutable while open; :mod:`hybridface.watch` reports it)."""

    id: int
    box: Box
    first_frame: int
    last_frame: int
    last_detected: int
    frames: int = 1
    hits: int = 1
    landmarks: np.ndarray | None = None
    detected_now: bool = True
    template: np.ndarray | None = field(default=None, repr=False)
    patch: np.ndarray | None = field(default=None, repr=False)  # grey pixels of the last detected box


class Tracker:
    """Associates detections with tracks and follows faces between detections.

    ``min_iou``: overlap that alone is enough to match; ``min_similarity``: template correlation
    that matches a detection whose box moved further (centres within one box side);
    ``max_missed``: frames a track may go without a matching detection before it ends;
    ``follow_threshold``: template-matching score below which a face counts as lost between detections;
    ``min_hits``: detections a new track needs before it is reported (its ``id`` is 0 until then).
    """

    def __init__(self, *, min_iou: float = 0.3, min_similarity: float = 0.6, max_missed: int = 10,
                 follow_threshold: float = 0.5, min_hits: int = 3) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ConfigError(f"min_iou={min_iou} must be in (0, 1]")
        if int(max_missed) < 0:
            raise ConfigError(f"max_missed={max_missed} must be >= 0 frames")
        self.min_iou = float(min_iou)
        self.min_similarity = float(min_similarity)
        self.max_missed = int(max_missed)
        self.follow_threshold = float(follow_threshold)
        self.min_hits = int(min_hits)
        self.tracks_: list[Track] = []
        self._ids = itertools.count(1)

    # -- matching
    def _score(self, track: Track, box: Box, tmpl: np.ndarray | None) -> float:
        o = iou(track.box, box)
        sim = float(track.template @ tmpl) if track.template is not None and tmpl is not None else 0.0
        if o >= self.min_iou:
            return 1.0 + o + max(sim, 0.0)
        near = (abs((track.box[0] + track.box[2] / 2) - (box[0] + box[2] / 2)) <= max(track.box[2], box[2])
                and abs((track.box[1] + track.box[3] / 2) - (box[1] + box[3] / 2)) <= max(track.box[3], box[3]))
        if not near:
            return 0.0
        # a face that jumped (subsampled or low-fps video): close by, similar size → same track;
        # template similarity orders the candidates, a strong one outranks a weak overlap
        ratio = min(track.box[2], box[2]) / max(track.box[2], box[2], 1e-6)
        if ratio < 0.6:
            return 0.0
        return o + max(sim, 0.0) + (1.0 if sim >= self.min_similarity else 0.1)

    def update(self, grey: np.ndarray, frame: int, detections: list | None) -> tuple[list[Track], list[Track]]:
        """Advance to ``frame``: ``detections`` (objects with ``.box``/``.landmarks``) or ``None`` on a
        frame that was not run through the detector. Returns ``(started, ended)``: tracks confirmed
        on this frame (``min_hits`` detections) and confirmed tracks that ended. Tentative tracks that
        are lost before confirmation disappear without a report (spurious detections)."""
        for t in self.tracks_:
            t.detected_now = False
        unmatched = list(self.tracks_)
        fresh: list[Track] = []
        started: list[Track] = []
        if detections is not None:
            tmpls = [_template(grey, tuple(map(float, d.box))) for d in detections]
            pairs = sorted(((self._score(t, tuple(map(float, d.box)), tmpls[j]), i, j)
                            for i, t in enumerate(self.tracks_) for j, d in enumerate(detections)), reverse=True)
            used_t: set[int] = set()
            used_d: set[int] = set()
            for s, i, j in pairs:
                if s <= 0.0 or i in used_t or j in used_d:
                    continue
                used_t.add(i)
                used_d.add(j)
                t = self.tracks_[i]
                self._confirm(t, grey, frame, detections[j], tmpls[j])
                if t.id == 0 and t.hits >= self.min_hits:
                    t.id = next(self._ids)
                    started.append(t)
            unmatched = [t for i, t in enumerate(self.tracks_) if i not in used_t]
            for j, d in enumerate(detections):
                box = tuple(map(float, d.box))
                if j not in used_d and all(iou(box, t.box) < self.min_iou for t in self.tracks_):
                    t = Track(0, box, frame, frame, frame, landmarks=d.landmarks, template=tmpls[j],
                              patch=self._patch(grey, box))
                    if self.min_hits <= 1:
                        t.id = next(self._ids)
                        started.append(t)
                    fresh.append(t)
        dropped: list[Track] = []
        for t in unmatched:
            followed = self._follow(t, grey, frame)
            if t.id == 0 and (detections is not None or not followed):
                dropped.append(t)  # tentative: one miss and it is gone
            elif frame - t.last_detected > self.max_missed:
                dropped.append(t)
        self.tracks_ = [t for t in self.tracks_ if t not in dropped] + fresh
        return started, [t for t in dropped if t.id != 0]

    def close(self) -> list[Track]:
        """End every open track (end of video, Ctrl-C); returns them."""
        out, self.tracks_ = self.tracks_, []
        return out

    # -- internals
    @staticmethod
    def _patch(grey: np.ndarray, box: Box) -> np.ndarray | None:
        c = _clip(box, grey.shape[1], grey.shape[0])
        return None if c is None else grey[c[1]:c[3], c[0]:c[2]].copy()

    def _confirm(self, t: Track, grey: np.ndarray, frame: int, det, tmpl: np.ndarray | None) -> None:
        t.box = tuple(map(float, det.box))
        t.landmarks = det.landmarks
        t.last_frame = t.last_detected = frame
        t.frames += 1
        t.hits += 1
        t.detected_now = True
        if tmpl is not None:
            t.template = tmpl
        t.patch = self._patch(grey, t.box)

    def _follow(self, t: Track, grey: np.ndarray, frame: int) -> bool:
        """Move ``t`` to where its last detected patch matches best near its box; False if lost."""
        import cv2

        if t.patch is None:
            return False
        ph, pw = t.patch.shape
        h, w = grey.shape
        x0, y0 = max(0, int(t.box[0] - pw / 2)), max(0, int(t.box[1] - ph / 2))
        x1, y1 = min(w, int(t.box[0] + t.box[2] + pw / 2)), min(h, int(t.box[1] + t.box[3] + ph / 2))
        if x1 - x0 < pw or y1 - y0 < ph:
            return False
        res = cv2.matchTemplate(grey[y0:y1, x0:x1], t.patch, cv2.TM_CCOEFF_NORMED)
        _, best, _, loc = cv2.minMaxLoc(res)
        if not np.isfinite(best) or best < self.follow_threshold:
            return False
        c = _clip(t.box, w, h)
        dx, dy = (x0 + loc[0]) - (c[0] if c else 0), (y0 + loc[1]) - (c[1] if c else 0)
        t.box = (t.box[0] + dx, t.box[1] + dy, t.box[2], t.box[3])
        t.landmarks = None if t.landmarks is None else (t.landmarks + np.float32([dx, dy])).astype(np.float32)
        t.last_frame = frame
        t.frames += 1
        return True
