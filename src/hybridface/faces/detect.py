"""Face detection back-ends that work offline: OpenCV Haar cascades and dlib (HOG, CNN MMOD).

``detect_faces(rgb, detector=...) -> list[Detection]``; back-ends:

``opencv``          Haar frontal (``alt2``), then — if it finds nothing — Haar profile on the
                    image and on its mirror (the profile cascade only knows one side).
``opencv-frontal``  Haar frontal only.   ``opencv-profile``  Haar profile (both sides) only.
``dlib``            dlib's HOG frontal detector + the 5-point landmark model (eye landmarks).
``dlib-cnn``        dlib's CNN (MMOD) detector + 5-point landmarks (slow on CPU, ~0.3 s/frame).
``cascade``         (default) dlib HOG (score ≥ 0) → Haar profile (both sides) → Haar frontal →
                    weak dlib HOG (score ≥ ``WEAK_HOG_THRESHOLD``) → dlib CNN (MMOD), upsampled
                    once for images whose shorter side is under ``CNN_UPSAMPLE_BELOW`` px; the first
                    stage that finds a face wins, so the slow CNN (0.3–2 s) runs only on images
                    the fast stages found nothing in (heads bowed, tilted back or in profile).
                    Without dlib installed it degrades to ``opencv``.
``cascade-fast``    ``cascade`` without the CNN stage: a face-less image costs tens of ms, not
                    seconds (the service's detector: an upload with no face must stay cheap).

Boxes are ``(x, y, w, h)`` floats in the input image's pixels, normalised to dlib's tight HOG
box convention (brow to chin) so crops look alike whichever stage found the face: the Haar
boxes are shrunk and shifted by factors measured on VidTIMIT (see ``_HAAR_TO_HOG``).
Landmarks are ``(2, 2)`` float32 ``[[eye on image left], [eye on image right]]`` (eye centres
from the 5-point model) or ``None`` (profile faces: the frontal landmark model is unreliable).
Images whose longer side exceeds ``MAX_SIDE`` are downscaled for detection; boxes are mapped back.
Models load lazily, once per thread, on first use.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import numpy as np

from hybridface.errors import ConfigError, MissingDependencyError, ModelFileError

__all__ = ["Detection", "detect_faces", "DETECTORS", "WEAK_HOG_THRESHOLD", "MAX_SIDE", "CNN_UPSAMPLE_BELOW"]

log = logging.getLogger(__name__)

DETECTORS = ("cascade", "cascade-fast", "opencv", "opencv-frontal", "opencv-profile", "dlib", "dlib-cnn")
#: Detection runs on a copy whose longer side is at most this many pixels.
MAX_SIDE = 640
#: Haar cascades look for faces at least this fraction of the shorter image side (24 px minimum).
MIN_FACE_FRACTION = 0.2
#: Last-resort HOG detections down to this (negative) score are accepted by ``cascade``.
WEAK_HOG_THRESHOLD = -0.6
#: ``cascade``'s last stage (dlib CNN) upsamples images whose shorter side is below this once: the CNN
#: finds faces of >= ~80 px without upsampling, >= ~40 px with it (VidTIMIT frames are 256x192).
CNN_UPSAMPLE_BELOW = 400
#: Haar box → HOG-like box: (size factor, vertical centre shift in units of the output width).
_HAAR_TO_HOG = {"frontal": (1 / 1.125, 0.103), "profile": (1 / 1.216, 0.13)}


@dataclass(frozen=True)
class Detection:
    """One face found in an image."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None
    detector: str = ""


class _Models(threading.local):
    """Per-thread lazily loaded models (OpenCV and dlib objects are not shared across threads)."""

    def __init__(self) -> None:
        self.cache: dict[str, object] = {}

    def get(self, name: str):
        if name not in self.cache:
            self.cache[name] = _load(name)
        return self.cache[name]


_MODELS = _Models()


def _load(name: str):
    if name in ("haar-frontal", "haar-profile"):
        import cv2

        fname = "haarcascade_frontalface_alt2.xml" if name == "haar-frontal" else "haarcascade_profileface.xml"
        path = str(cv2.data.haarcascades) + fname
        clf = cv2.CascadeClassifier(path)
        if clf.empty():
            raise ModelFileError(f"{path}: OpenCV Haar cascade missing; reinstall opencv-python-headless<5")
        return clf
    dlib = _dlib()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
        import face_recognition_models as frm
    if name == "dlib-hog":
        return dlib.get_frontal_face_detector()
    if name == "dlib-cnn":
        return dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
    if name == "dlib-5pt":
        return dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    raise KeyError(name)


def _dlib():
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError(
            f"dlib is not installed ({exc}); install it with: pip install 'hybridface[dlib]', "
            "or use --detector opencv"
        ) from exc
    return dlib


@functools.lru_cache(maxsize=1)
def _have_dlib() -> bool:
    try:
        _dlib()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition_models  # noqa: F401
    except (MissingDependencyError, ImportError):
        return False
    return True


# ---------------------------------------------------------------------------------- back-ends


def _haar(grey: np.ndarray, kind: str) -> list[Detection]:
    """Haar cascade ``kind`` ('frontal'/'profile'); the profile cascade also runs on the mirror."""
    clf = _MODELS.get(f"haar-{kind}")
    h, w = grey.shape
    min_side = max(24, int(min(h, w) * MIN_FACE_FRACTION))
    kw = dict(scaleFactor=1.1, minNeighbors=3, minSize=(min_side, min_side), outputRejectLevels=True)
    out: list[Detection] = []
    factor, shift = _HAAR_TO_HOG[kind]
    for mirrored in (False, True) if kind == "profile" else (False,):
        import cv2

        img = cv2.flip(grey, 1) if mirrored else grey
        boxes, _, weights = clf.detectMultiScale3(img, **kw)
        for (x, y, bw, bh), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            x, y, bw, bh = float(x), float(y), float(bw), float(bh)
            if mirrored:
                x = w - x - bw
            side = bw * factor
            cx, cy = x + bw / 2, y + bh / 2 + shift * side
            out.append(Detection((cx - side / 2, cy - side / 2, side, side), float(wt), None, f"opencv-{kind}"))
    return _nms(out)


def _eyes(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    dlib = _dlib()
    x, y, w, h = box
    rect = dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
    shape = _MODELS.get("dlib-5pt")(rgb, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(4)], np.float32)
    a, b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
    eyes = np.stack(sorted((a, b), key=lambda p: p[0])).astype(np.float32)
    dist = float(np.hypot(*(eyes[1] - eyes[0])))
    if not (0.2 * w <= dist <= 0.8 * w):  # implausible eye distance: do not align on it
        return None
    return eyes


def _dlib_hog(rgb: np.ndarray, threshold: float) -> list[Detection]:
    # HOG finds faces of >= 80 px; upsample small images once (4x the work) so their faces qualify.
    up = 1 if min(rgb.shape[:2]) < 160 else 0
    rects, scores, _ = _MODELS.get("dlib-hog").run(rgb, up, float(threshold))
    return [
        Detection((float(r.left()), float(r.top()), float(r.width()), float(r.height())), float(s), None, "dlib")
        for r, s in zip(rects, scores)
    ]


def _dlib_cnn(rgb: np.ndarray, upsample: int = 0, name: str = "dlib-cnn") -> list[Detection]:
    dets = _MODELS.get("dlib-cnn")(rgb, int(upsample))
    return [
        Detection(
            (float(d.rect.left()), float(d.rect.top()), float(d.rect.width()), float(d.rect.height())),
            float(d.confidence),
            None,
            name,
        )
        for d in dets
    ]


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _nms(dets: list[Detection], thresh: float = 0.3) -> list[Detection]:
    keep: list[Detection] = []
    for d in sorted(dets, key=lambda d: d.score, reverse=True):
        if all(_iou(d.box, k.box) < thresh for k in keep):
            keep.append(d)
    return keep


def _with_landmarks(rgb: np.ndarray, dets: list[Detection]) -> list[Detection]:
    return [Detection(d.box, d.score, _eyes(rgb, d.box), d.detector) for d in dets]


def _run(rgb: np.ndarray, grey: np.ndarray, detector: str, landmarks: bool) -> list[Detection]:
    # Haar frontal boxes get eyes from dlib's 5-point model if dlib is installed; dlib is imported
    # only then (a face found, eyes asked for), never for the profile cascade or an empty image
    if detector == "opencv-frontal":
        dets = _haar(grey, "frontal")
        return _with_landmarks(rgb, dets) if dets and landmarks and _have_dlib() else dets
    if detector == "opencv-profile":
        return _haar(grey, "profile")
    if detector == "opencv":
        dets = _haar(grey, "frontal")
        if dets:
            return _with_landmarks(rgb, dets) if landmarks and _have_dlib() else dets
        return _haar(grey, "profile")
    if detector == "dlib":
        dets = _nms(_dlib_hog(rgb, 0.0))
        return _with_landmarks(rgb, dets) if landmarks else dets
    if detector == "dlib-cnn":
        dets = _nms(_dlib_cnn(rgb))
        return _with_landmarks(rgb, dets) if landmarks else dets
    # cascade
    if not _have_dlib():
        return _run(rgb, grey, "opencv", landmarks)
    hog = _nms(_dlib_hog(rgb, WEAK_HOG_THRESHOLD))
    strong = [d for d in hog if d.score >= 0.0]
    if strong:
        return _with_landmarks(rgb, strong) if landmarks else strong
    dets = _haar(grey, "profile")
    if dets:
        return dets
    dets = _haar(grey, "frontal")
    if dets:
        return _with_landmarks(rgb, dets) if landmarks else dets
    if hog:
        weak = [Detection(d.box, d.score, None, "dlib-weak") for d in hog[:1]]
        return _with_landmarks(rgb, weak) if landmarks else weak
    if detector == "cascade-fast":
        return []
    up = 1 if min(rgb.shape[:2]) < CNN_UPSAMPLE_BELOW else 0
    cnn = _nms(_dlib_cnn(rgb, up, "dlib-cnn-fallback"))
    return _with_landmarks(rgb, cnn) if landmarks else cnn


def detect_faces(image: np.ndarray, *, detector: str = "cascade", landmarks: bool = True) -> list[Detection]:
    """Faces in an ``(H, W, 3)`` uint8 RGB image (or ``(H, W)`` grey), best score first."""
    import cv2

    if detector not in DETECTORS:
        raise ConfigError(f"detector={detector!r} is not known; use one of {', '.join(DETECTORS)}")
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"detect_faces expects an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    scale = 1.0
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(img)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    dets = _run(img, grey, detector, landmarks)
    if scale != 1.0:
        s = 1.0 / scale
        dets = [
            Detection(
                tuple(v * s for v in d.box),  # type: ignore[arg-type]
                d.score,
                None if d.landmarks is None else (d.landmarks * s).astype(np.float32),
                d.detector,
            )
            for d in dets
        ]
    return dets
