"""Tan & Triggs illumination normalisation (``illumination="tan_triggs"``) on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ConfigError
from hybridface.models.preprocess import PreprocessSpec, preprocess, tan_triggs

TT = PreprocessSpec(illumination="tan_triggs")


@pytest.fixture(scope="module")
def faces(dataset) -> np.ndarray:
    """Four well-lit 60x60 ORL faces (two identities), uint8 RGB (n, 60, 60, 3)."""
    from hybridface.models.data import load_faces

    root = dataset("att_orl")
    imgs, kept, errors = load_faces([root / "s1" / "1.png", root / "s1" / "2.png",
                                     root / "s2" / "1.png", root / "s2" / "2.png"])
    assert not errors and len(imgs) == 4
    return imgs


def _scaled(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(np.rint(img.astype(np.float64) * factor), 0, 255).astype(np.uint8)


def test_finite_deterministic_in_range(faces):
    x = preprocess(faces, TT)
    assert x.shape == (4, 3, 60, 60) and x.dtype == np.float32 and np.isfinite(x).all()
    assert x.min() == 0.0 and x.max() == 1.0  # per-image min-max to [0, 1]
    assert np.array_equal(x, preprocess(faces, TT))
    assert np.array_equal(x[:, 0], x[:, 2])  # grey -> three equal channels
    # batch-independent: one image alone gives the same planes as inside the batch
    assert np.allclose(preprocess(faces[2:3], TT), x[2:3], atol=1e-6)
    # flat and black images stay finite (mid-grey)
    flat = preprocess(np.zeros((2, 60, 60, 3), np.uint8), TT)
    assert np.isfinite(flat).all() and np.allclose(flat, 0.5)
    rgb = preprocess(faces, PreprocessSpec(illumination="tan_triggs", channels="rgb"))
    assert rgb.shape == (4, 3, 60, 60) and np.isfinite(rgb).all()


def test_invariant_to_global_brightness(faces):
    ref = preprocess(faces, TT)
    for factor in (0.5, 0.8):
        other = preprocess(_scaled(faces, factor), TT)
        # exact up to uint8 rounding of the scaled image
        assert np.abs(other - ref).mean() < 0.02, factor
    raw = preprocess(faces)
    assert np.abs(preprocess(_scaled(faces, 0.5)) - raw).mean() > 0.1  # raw pixels do change


def test_dark_and_bright_copies_become_close(faces):
    """A dark (x0.15, plus a lighting gradient) copy is much closer to its bright original after Tan-Triggs."""
    ramp = np.linspace(0.05, 0.3, 60)[None, None, :, None]  # side lighting: dark left, dim right
    dark = np.clip(np.rint(faces * ramp), 0, 255).astype(np.uint8)

    def dist(spec: PreprocessSpec) -> tuple[float, float]:
        a, b = preprocess(faces, spec)[:, 0], preprocess(dark, spec)[:, 0]
        same = np.abs(a - b).mean(axis=(1, 2))
        other = np.abs(a[[0, 1]] - b[[2, 3]]).mean(axis=(1, 2))  # bright s1 vs dark s2
        return float(same.mean()), float(other.mean())

    raw_same, raw_other = dist(PreprocessSpec())
    tt_same, tt_other = dist(TT)
    assert tt_same < 0.5 * raw_same
    assert tt_same < tt_other  # after normalisation the dark copy is nearer its own face than another's


def test_bad_planes():
    with pytest.raises(ConfigError, match="tan_triggs"):
        tan_triggs(np.zeros((60, 60), np.uint8))
    assert tan_triggs(np.zeros((0, 60, 60), np.uint8)).shape == (0, 60, 60)


def test_median3_denoising_removes_salt_and_pepper_before_tan_triggs(faces):
    """``denoise="median3"`` runs before the illumination step: a face with 2 % salt-and-pepper
    comes out much closer to the clean face than without it; the default spec is unchanged and the
    field is left out of the card at its default (older cards and cache keys stay valid)."""
    from hybridface.faces.augment import augment

    clean = np.asarray(faces, dtype=np.uint8)[:4]
    noisy = np.stack([augment(img, 13, seed=0) for img in clean])
    plain, med = PreprocessSpec(illumination="tan_triggs"), PreprocessSpec(illumination="tan_triggs", denoise="median3")
    err = lambda spec: np.abs(preprocess(noisy, spec) - preprocess(clean, spec)).mean()  # noqa: E731
    assert err(med) < 0.5 * err(plain)
    assert "denoise" not in plain.to_dict() and med.to_dict()["denoise"] == "median3"
    assert PreprocessSpec.from_dict(med.to_dict()) == med and PreprocessSpec.from_dict(plain.to_dict()) == plain
    with pytest.raises(ConfigError, match="unknown denoising 'gauss'; use one of none, median3, auto"):
        PreprocessSpec(denoise="gauss")


def test_auto_denoising_filters_only_noisy_images(dataset):
    """``denoise="auto"`` leaves clean, rotated, scaled, blurred, shifted faces bit-identical to no
    denoising, and filters the noisy variants (Gaussian σ = 10 / 20, salt-and-pepper) at their
    input resolution, where the noise estimate separates them (Extended Yale B crops)."""
    import cv2

    from hybridface.faces.augment import augment
    from hybridface.models.preprocess import AUTO_NOISE_SIGMA, noise_sigma

    yale = dataset("extended_yale_b")
    files = sorted(p for d in sorted(yale.iterdir())[:3] for p in sorted(d.iterdir())[:2])
    clean = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    plain, auto = PreprocessSpec(illumination="tan_triggs"), PreprocessSpec(illumination="tan_triggs", denoise="auto")
    gaps = {"auto": [], "none": []}
    for img in clean:
        for v in (0, 1, 7, 14, 15, 17):
            a = augment(img, v, seed=1)
            assert noise_sigma(a) < AUTO_NOISE_SIGMA
            assert np.array_equal(preprocess(a[None], auto), preprocess(a[None], plain))
        for v in (11, 12, 13):  # detected; salt-and-pepper comes out much closer to the clean face
            assert noise_sigma(augment(img, v, seed=1)) > AUTO_NOISE_SIGMA
        sp = augment(img, 13, seed=1)
        for spec in (auto, plain):
            gaps[spec.denoise].append(np.abs(preprocess(sp[None], spec) - preprocess(img[None], plain)).mean())
    assert np.mean(gaps["auto"]) < 0.5 * np.mean(gaps["none"])
    assert noise_sigma(np.zeros((2, 2, 3), np.uint8)) == 0.0
