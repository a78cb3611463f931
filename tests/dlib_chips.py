"""Reference data for the dlib ports: faces from ../shared, dlib's landmarks, chips and descriptors.

dlib is the *reference* here (``hybridface[dlib]``); the ports under test never import it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

DATASETS = ("vidtimit14", "extended_yale_b", "att_orl", "unlabeled_faces/utkface")


def sample_files(datasets_dir: Path, n: int, *, seed: int = 0) -> list[Path]:
    """``n`` image files spread evenly over the shared datasets (deterministic)."""
    per = -(-n // len(DATASETS))
    out: list[Path] = []
    rng = np.random.default_rng(seed)
    for name in DATASETS:
        files = sorted((datasets_dir / name).rglob("*.*"))
        files = [f for f in files if f.suffix.lower() in (".jpg", ".png", ".pgm", ".jpeg")]
        if files:
            out += [files[i] for i in sorted(rng.choice(len(files), size=min(per, len(files)), replace=False))]
    return out[:n]


def dlib_reference(files: list[Path]) -> dict[str, np.ndarray]:
    """dlib's face box (HOG, else the whole image), 5 landmarks, chip and raw descriptor per file."""
    import dlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition_models as frm
    from hybridface.faces.io import load_image

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    images, boxes, marks, chips = [], [], [], []
    for f in files:
        img = load_image(f)
        found = det(img, 1)
        r = max(found, key=lambda d: d.area()) if found else dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        shape = sp(img, r)
        images.append(img)
        boxes.append([r.left(), r.top(), r.right(), r.bottom()])
        marks.append([[p.x, p.y] for p in shape.parts()])
        chips.append(np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25)))
    chips_a = np.stack(chips)
    desc = np.asarray(net.compute_face_descriptor(list(chips_a), 0), dtype=np.float32)
    return {"images": images, "boxes": np.asarray(boxes, np.float64), "landmarks": np.asarray(marks, np.float64),
            "chips": chips_a, "descriptors": desc}
