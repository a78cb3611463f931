"""The IoU + template tracker on synthetic frames: matching, confirmation, following, ending."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from hybridface.errors import ConfigError
from hybridface.faces.track import Tracker, iou


@dataclass(frozen=True)
class Det:
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None


def _scene(blobs: list[tuple[int, int]], *, seed: int = 0) -> np.ndarray:
    """A 200x300 grey frame with a textured 40x40 square at each (x, y)."""
    rng = np.random.default_rng(seed)
    img = np.full((200, 300), 60, np.uint8)
    tex = np.random.default_rng(7).integers(0, 255, (40, 40)).astype(np.uint8)
    for x, y in blobs:
        img[y:y + 40, x:x + 40] = tex
    return np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_a_track_is_reported_after_min_hits_and_ends_after_max_missed():
    tr = Tracker(min_hits=3, max_missed=4)
    reported = []
    for f in range(3):
        started, ended = tr.update(_scene([(50 + 2 * f, 50)], seed=f), f, [Det((50 + 2 * f, 50, 40, 40))])
        reported += started
        assert not ended
    assert [t.id for t in reported] == [1] and reported[0].frames == 3
    # the face disappears: no detections, template matching cannot find it; ends after max_missed frames
    ends = []
    for f in range(3, 12):
        _, ended = tr.update(_scene([], seed=f), f, [])
        ends += ended
    assert [t.id for t in ends] == [1] and tr.tracks_ == []


def test_a_single_spurious_detection_is_never_reported():
    tr = Tracker(min_hits=3)
    started, _ = tr.update(_scene([(50, 50)]), 0, [Det((50, 50, 40, 40))])
    assert started == []
    started, ended = tr.update(_scene([]), 1, [])
    assert started == [] and ended == [] and tr.tracks_ == []


def test_faces_are_followed_between_detections():
    tr = Tracker(min_hits=1)
    tr.update(_scene([(40, 60)]), 0, [Det((40, 60, 40, 40))])
    for f in range(1, 6):  # no detector run; the face moves 6 px per frame
        _, ended = tr.update(_scene([(40 + 6 * f, 60)], seed=f), f, None)
        assert not ended
    (t,) = tr.tracks_
    assert t.box[0] == pytest.approx(70, abs=1) and t.box[1] == pytest.approx(60, abs=1) and t.frames == 6


def test_two_faces_keep_their_tracks():
    tr = Tracker(min_hits=1)
    tr.update(_scene([(20, 50), (200, 50)]), 0, [Det((20, 50, 40, 40)), Det((200, 50, 40, 40))])
    ids = {t.id: t.box[0] for t in tr.tracks_}
    for f in range(1, 5):  # detections listed in the other order each frame
        dets = [Det((200 - 3 * f, 50, 40, 40)), Det((20 + 3 * f, 50, 40, 40))]
        started, ended = tr.update(_scene([(20 + 3 * f, 50), (200 - 3 * f, 50)], seed=f), f, dets)
        assert not started and not ended
    now = {t.id: t.box[0] for t in tr.tracks_}
    assert set(now) == set(ids)
    left = min(ids, key=ids.get)
    assert now[left] == 32 and now[max(ids, key=ids.get)] == 188


def test_bad_settings():
    with pytest.raises(ConfigError):
        Tracker(min_iou=0)
    with pytest.raises(ConfigError):
        Tracker(max_missed=-1)
