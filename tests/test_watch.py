"""``watch``: tracking, per-track voting and events on real VidTIMIT videos built in tmp dirs,
``Gallery.watch`` and ``hybridface watch``, and every bad input (source, stream, frames, gallery)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hybridface.api import open_gallery
from hybridface.errors import ConfigError, EmptyGalleryError, SourceError
from hybridface.watch import WatchEvent

sys.path.insert(0, str(Path(__file__).parent))
from watch_data import frames_of, read_rgb, tiled, write_video  # noqa: E402

PEOPLE = ("fcft0", "fcmh0", "fdac1", "fjem0")
SRC = Path(__file__).resolve().parents[1] / "src"


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "hybridface", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


@pytest.fixture(scope="module")
def vid(dataset):
    return dataset("vidtimit14")


@pytest.fixture(scope="module")
def gallery_db(vid, tmp_path_factory) -> Path:
    """4 people enrolled from every 8th frame of the first 60 % of their frames (general model)."""
    db = tmp_path_factory.mktemp("watch") / "g.db"
    with open_gallery(db, model="general", create=True) as g:
        for p in PEOPLE:
            assert g.enroll(p, frames_of(vid / p, end=0.6, step=8), detect="largest", detector="dlib").added >= 8
    return db


@pytest.fixture(scope="module")
def videos(vid, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    one = [read_rgb(f) for f in frames_of(vid / "fcft0", start=0.6, end=0.9)]
    return {
        "one": write_video(one, d / "one.mp4"),
        "one_avi": write_video(one, d / "one.avi", codec="MJPG"),
        "two": write_video(tiled(frames_of(vid / "fcmh0", start=0.6, end=0.9),
                                 frames_of(vid / "fjem0", start=0.6, end=0.9)), d / "two.mp4"),
    }


def _events(g, source, **kw) -> list[WatchEvent]:
    return list(g.watch(source, **kw))


def _check_balanced(events: list[WatchEvent]) -> None:
    starts = {e.track for e in events if e.event == "track_start"}
    ends = [e.track for e in events if e.event == "track_end"]
    assert sorted(ends) == sorted(starts), "every track_start has exactly one track_end"
    assert events[0].event == "stream_start" and events[-1].event == "stream_end"


def test_one_person_video_is_one_identified_track(gallery_db, videos):
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        ev = _events(g, videos["one"])
    _check_balanced(ev)
    tracks = [e for e in ev if e.event == "track_end"]
    assert len(tracks) == 1
    end = tracks[0]
    assert end.identity == "fcft0" and end.frames >= 50 and 0 <= end.distance < 0.5
    ident = [e for e in ev if e.event == "identified"]
    assert ident and ident[0].identity == "fcft0" and ident[0].frame < 15
    assert ev[-1].reason == "eof" and ev[-1].frames == 60
    d = ident[0].to_dict()
    assert set(d) == {"event", "time", "frame", "track", "box", "identity", "distance", "frames"}
    assert len(d["box"]) == 4 and json.dumps(d)


def test_two_people_side_by_side_get_two_tracks_with_their_names(gallery_db, videos):
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        ev = _events(g, videos["two"], strategy="exhaustive")
    _check_balanced(ev)
    ends = sorted((e for e in ev if e.event == "track_end" and e.frames >= 10), key=lambda e: e.box[0])
    assert [e.identity for e in ends] == ["fcmh0", "fjem0"]
    assert ends[0].box[0] < 256 <= ends[1].box[0]


def test_every_k_frames_tracks_in_between(gallery_db, videos):
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        ev = _events(g, videos["one"], every=4)
    _check_balanced(ev)
    ends = [e for e in ev if e.event == "track_end"]
    assert [e.identity for e in ends] == ["fcft0"]
    assert ends[0].frames > 60 // 4 + 5, "frames between detections are followed, and vote"


def test_open_set_threshold_leaves_a_stranger_unknown(gallery_db, videos):
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        ev = _events(g, videos["one"], threshold=1e-4)
    assert not [e for e in ev if e.event == "identified"]
    assert [e.identity for e in ev if e.event == "track_end"] == [None]


def test_cli_jsonl_and_annotated_video(gallery_db, videos, tmp_path):
    out = tmp_path / "ann.mp4"
    r = _cli("watch", str(videos["one_avi"]), "--db", str(gallery_db), "--model", "general",
             "--annotate", str(out), "--strategy", "hybrid", "--top-n", "2")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["event"] for x in lines][0] == "stream_start" and lines[-1]["event"] == "stream_end"
    assert [x["identity"] for x in lines if x["event"] == "track_end"] == ["fcft0"]
    assert "fps" in r.stderr and "Traceback" not in r.stderr
    import cv2

    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 256


def test_folder_of_frames_skips_unreadable_and_wrong_size_frames(gallery_db, vid, tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames_of(vid / "fdac1", start=0.6, end=0.8)):
        (folder / f"f{i:03d}.jpg").write_bytes(f.read_bytes())
    (folder / "f010.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(folder / "f020.jpg"), np.zeros((100, 80, 3), np.uint8))
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        ev = _events(g, folder)
    _check_balanced(ev)
    skipped = [e for e in ev if e.event == "frame_skipped"]
    assert [e.frame for e in skipped] == [10, 20]
    assert "not a readable image" in skipped[0].message and "80x100" in skipped[1].message
    assert "fdac1" in [e.identity for e in ev if e.event == "track_end"]
    assert ev[-1].reason == "eof"


def test_stream_dropping_midway_closes_tracks_and_says_so(gallery_db, videos, tmp_path):
    data = videos["one_avi"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    r = _cli("watch", str(cut), "--db", str(gallery_db), "--model", "general", "--no-progress")
    assert r.returncode == 2
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[-1]["event"] == "stream_end" and lines[-1]["reason"] == "dropped"
    assert len([x for x in lines if x["event"] == "track_end"]) == len([x for x in lines if x["event"] == "track_start"]) >= 1
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and "truncated" in err[-1] and "Traceback" not in r.stderr


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.mp4", "no such file"),
    (lambda d: (d / "text.mp4").write_text("hello") and d / "text.mp4", "cannot open this video file"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no image files"),
    (lambda d: "rtsp://127.0.0.1:9/none", "cannot open this stream"),
])
def test_unopenable_sources_are_one_line_and_exit_2(gallery_db, tmp_path, make, words):
    r = _cli("watch", str(make(tmp_path)), "--db", str(gallery_db), "--model", "general")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and words in r.stderr
    assert "Traceback" not in r.stderr


def test_empty_gallery_and_bad_options_fail_before_any_event(videos, gallery_db, tmp_path):
    empty = tmp_path / "empty.db"
    open_gallery(empty, model="general", create=True).close()
    r = _cli("watch", str(videos["one"]), "--db", str(empty), "--model", "general")
    assert r.returncode == 2 and r.stdout == "" and "no templates" in r.stderr and "Traceback" not in r.stderr
    with open_gallery(empty, model="general") as g, pytest.raises(EmptyGalleryError):
        g.watch(videos["one"])
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        with pytest.raises(ConfigError, match="every"):
            g.watch(videos["one"], every=0)
        with pytest.raises(ConfigError, match="does not take"):
            g.watch(videos["one"], colour="red")
        with pytest.raises(ConfigError, match="strategy"):
            g.watch(videos["one"], strategy="psychic")
        with pytest.raises(ConfigError, match="does not exist"):
            g.watch(videos["one"], annotate=str(tmp_path / "no" / "such" / "out.mp4"))
        with pytest.raises(SourceError):
            g.watch(tmp_path / "nothing-here")


def test_ctrl_c_closes_every_open_track(gallery_db, vid, tmp_path):
    folder = tmp_path / "slow"
    folder.mkdir()
    for i, f in enumerate(frames_of(vid / "fjem0", start=0.6)):
        (folder / f"{i:04d}.jpg").write_bytes(f.read_bytes())
    env = dict(os.environ, PYTHONPATH=str(SRC))
    p = subprocess.Popen([sys.executable, "-m", "hybridface", "watch", str(folder), "--db", str(gallery_db),
                          "--model", "general", "--max-fps", "10", "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(json.loads(line))
        if line and lines[-1]["event"] == "track_start":
            p.send_signal(signal.SIGINT)
            break
    out, err = p.communicate(timeout=60)
    lines += [json.loads(x) for x in out.splitlines()]
    assert p.returncode == 130, err
    assert lines[-1]["event"] == "stream_end" and lines[-1]["reason"] == "interrupted"
    assert lines[-1]["frames"] < 90, "stopped early, not at the end of the folder"
    starts = [x["track"] for x in lines if x["event"] == "track_start"]
    assert starts and sorted(x["track"] for x in lines if x["event"] == "track_end") == sorted(starts)
    assert "Traceback" not in err and "every open track was closed" in err


def test_keyboard_interrupt_inside_the_python_loop_still_closes_tracks(gallery_db, videos):
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        calls = []

        def on_frame(i, fps):
            calls.append(i)
            if i == 20:
                raise KeyboardInterrupt

        ev = list(g.watch(videos["one"], on_frame=on_frame))
    _check_balanced(ev)
    assert ev[-1].reason == "interrupted" and ev[-1].frames == 21  # frames 0..20 were processed


@pytest.fixture()
def http_dir(tmp_path):
    """A local HTTP server (loopback, a thread of this process) serving ``tmp_path``."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_url_source_and_a_stream_that_drops(gallery_db, videos, http_dir):
    folder, base = http_dir
    data = videos["one_avi"].read_bytes()
    (folder / "whole.avi").write_bytes(data)
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        ev = _events(g, f"{base}/whole.avi")
        assert ev[0].message.startswith("url ")
        _check_balanced(ev)
        assert [e.identity for e in ev if e.event == "track_end"] == ["fcft0"] and ev[-1].reason == "eof"
        ev = _events(g, f"{base}/cut.avi")
    _check_balanced(ev)
    assert ev[-1].reason == "dropped" and "the stream dropped" in ev[-1].message
    assert ev[-1].frames < 60


def test_max_fps_paces_a_file_and_max_frames_stops_it(gallery_db, videos):
    with open_gallery(gallery_db, model="general", readonly=True) as g:
        t0 = time.perf_counter()
        ev = _events(g, videos["one"], max_fps=20, max_frames=10)
        took = time.perf_counter() - t0
    assert ev[-1].reason == "max_frames" and ev[-1].frames == 10
    assert took >= 9 / 20, f"10 frames at <= 20 fps take >= 0.45 s, took {took:.2f} s"
    with open_gallery(gallery_db, model="general", readonly=True) as g, pytest.raises(ConfigError, match="max_fps"):
        g.watch(videos["one"], max_fps=0)
