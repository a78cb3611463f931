"""The 17 augmentations + identity: shapes, determinism, and that each does what its row says."""

from __future__ import annotations

import numpy as np
import pytest

from hybridface.errors import ConfigError
from hybridface.faces.augment import NUM_VARIANTS, VARIANTS, augment, augment_all


def _face() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = np.zeros((60, 60, 3), np.uint8)
    img[:, :30] = 60
    img[:, 30:] = 200
    img[10:20, 15:25] = 255  # asymmetric bright patch
    return np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)


def test_table_has_18_variants_in_order():
    assert NUM_VARIANTS == 18 == len(VARIANTS)
    assert [v.index for v in VARIANTS] == list(range(18))
    kinds = [v.kind for v in VARIANTS]
    assert kinds.count("rotate") == 6 and kinds.count("scale") == 4 and kinds.count("gauss_noise") == 2
    assert kinds.count("translate") == 2 and kinds[-1] == "hflip" and kinds[0] == "identity"


def test_every_variant_shape_dtype_and_distinct():
    img = _face()
    out = augment_all(img, seed=5)
    assert out.shape == (18, 60, 60, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], img)
    for i in range(1, 18):
        assert not np.array_equal(out[i], img), f"variant {i} left the image unchanged"
    grey = augment(img[:, :, 0], 3)
    assert grey.shape == (60, 60)


def test_deterministic_given_seed():
    img = _face()
    for v in range(NUM_VARIANTS):
        np.testing.assert_array_equal(augment(img, v, seed=11), augment(img, v, seed=11))
    assert not np.array_equal(augment(img, 11, seed=1), augment(img, 11, seed=2))
    np.testing.assert_array_equal(augment(img, 17, seed=1), augment(img, 17, seed=2))


def test_semantics():
    img = _face()
    np.testing.assert_array_equal(augment(img, 17), img[:, ::-1])
    # translation +4 px: column c of the output is column c-4 of the input
    np.testing.assert_array_equal(augment(img, 16)[:, 10:50], img[:, 6:46])
    np.testing.assert_array_equal(augment(img, 15)[:, 10:50], img[:, 14:54])
    noise10 = augment(img, 11, seed=0).astype(float) - img
    noise20 = augment(img, 12, seed=0).astype(float) - img
    assert 8 < noise10.std() < 12 and 17 < noise20.std() < 23
    sp = augment(img, 13, seed=0)
    changed = np.any(sp != img, axis=2).mean()
    assert 0.01 < changed < 0.03
    blur = augment(img, 14)
    assert blur.astype(float).std() < img.astype(float).std()
    # zoom in (1.15) moves the bright patch away from the centre; zoom out (0.85) toward it
    def patch_centre(a):
        ys, xs = np.nonzero(a[:, :, 0] > 240)
        return np.hypot(ys.mean() - 29.5, xs.mean() - 29.5)

    assert patch_centre(augment(img, 10)) > patch_centre(img) > patch_centre(augment(img, 7))
    # rotations: opposite angles differ, and each stays close to the original near the centre
    assert not np.array_equal(augment(img, 1), augment(img, 6))


@pytest.mark.parametrize("bad", [-1, 18, 2.5])
def test_bad_variant(bad):
    with pytest.raises(ConfigError, match="variant"):
        augment(_face(), bad)


def test_bad_image():
    with pytest.raises(ConfigError):
        augment(np.zeros((4, 4), np.float32), 1)


def test_relight_changes_light_not_shape_and_is_seeded():
    from hybridface.faces.augment import relight

    rng = np.random.default_rng(0)
    batch = rng.integers(60, 200, size=(16, 20, 20, 3), dtype=np.uint8)
    out = relight(batch, np.random.default_rng(1), p=1.0)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert (out != batch).any(axis=(1, 2, 3)).all()  # every image relit
    np.testing.assert_array_equal(out, relight(batch, np.random.default_rng(1), p=1.0))
    # the light varies across the image: one half ends up darker than the other in most images
    halves = [abs(float(o[:, :10].mean()) - float(o[:, 10:].mean())) + abs(float(o[:10].mean()) - float(o[10:].mean()))
              for o in out.astype(np.float32)]
    assert np.median(halves) > 10
    np.testing.assert_array_equal(relight(batch, np.random.default_rng(1), p=0.0), batch)
    # the input is never modified in place
    np.testing.assert_array_equal(batch, np.random.default_rng(0).integers(60, 200, size=(16, 20, 20, 3), dtype=np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32)])
def test_relight_rejects_other_batches(bad):
    from hybridface.faces.augment import relight

    with pytest.raises(ConfigError, match="uint8"):
        relight(bad, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="p="):
        relight(np.zeros((1, 8, 8, 3), np.uint8), np.random.default_rng(0), p=1.5)


def test_warp_pose_foreshortens_one_side_and_is_seeded():
    """A warped chip keeps its shape; the far side of the turned head is narrower: a vertical
    stripe pattern's stripes get thinner on one side and wider on the other."""
    from hybridface.faces.augment import warp_pose

    s = 60
    stripes = np.zeros((s, s, 3), np.uint8)
    stripes[:, ::4] = 255  # one bright column in 4
    batch = np.stack([stripes] * 12)
    out = warp_pose(batch, np.random.default_rng(2), p=1.0)
    assert out.shape == batch.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, warp_pose(batch, np.random.default_rng(2), p=1.0))
    np.testing.assert_array_equal(warp_pose(batch, np.random.default_rng(2), p=0.0), batch)
    mid = out[:, s // 2].astype(np.float32).mean(axis=2)  # the middle row of each image
    # bright-column crossings per third: the far third packs more stripes than the near one
    crossings = [[int((np.diff((r[a:a + s // 3] > 127).astype(int)) != 0).sum()) for a in (0, 2 * s // 3)] for r in mid]
    assert sum(abs(a - b) >= 2 for a, b in crossings) >= 8, crossings
    assert (batch == np.stack([stripes] * 12)).all()  # the input is never modified in place


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32),
                                 np.zeros((2, 8, 6, 3), np.uint8)])
def test_warp_pose_rejects_other_batches(bad):
    from hybridface.faces.augment import warp_pose

    with pytest.raises(ConfigError, match="uint8"):
        warp_pose(bad, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="p="):
        warp_pose(np.zeros((1, 8, 8, 3), np.uint8), np.random.default_rng(0), p=-0.1)
