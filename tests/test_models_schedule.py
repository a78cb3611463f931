"""``schedule`` of the trainer (``TrainConfig.paper``): cosine decay reaches ~0 at the last epoch; unknown names are errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from hybridface.errors import ConfigError  # noqa: E402
from hybridface.models.preprocess import PreprocessSpec  # noqa: E402
from hybridface.training.trainer import TrainConfig, train  # noqa: E402


def _data(n_per: int = 6, k: int = 3) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, size=(n_per * k, 60, 60, 3), dtype=np.uint8)
    return imgs, [f"id{i % k}" for i in range(n_per * k)]


def test_cosine_schedule_decays_to_zero():
    imgs, ids = _data()
    opts = dict(epochs=4, lr=1e-3, val_fraction=0.0, batch_size=5, patience=10, progress=False, threads=1,
                preprocessing=PreprocessSpec(illumination="tan_triggs"))
    const = train(TrainConfig.paper(schedule="constant", **opts), imgs, labels=ids)
    cos = train(TrainConfig.paper(schedule="cosine", **opts), imgs, labels=ids)
    assert [h["lr"] for h in const.history] == [1e-3] * 4
    lrs = [h["lr"] for h in cos.history]  # lr after each epoch's last step
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[0] < 1e-3 and lrs[-1] < 1e-9
    assert np.isfinite([h["loss"] for h in cos.history]).all()


def test_unknown_schedule():
    with pytest.raises(ConfigError, match="lr schedule 'step'; use one of constant, cosine, onecycle"):
        TrainConfig.paper(schedule="step", epochs=1)


def test_center_loss_adds_to_ce_and_keeps_the_network():
    imgs, ids = _data()
    opts = dict(epochs=2, lr=1e-3, val_fraction=0.0, batch_size=6, patience=10, progress=False, threads=1)
    ce = train(TrainConfig.paper(**opts), imgs, labels=ids)
    cl = train(TrainConfig.paper(center_loss=0.5, **opts), imgs, labels=ids)
    # same seed, same first batch: the centre term only adds to the loss
    assert cl.history[0]["loss"] > ce.history[0]["loss"]
    assert np.isfinite([h["loss"] for h in cl.history]).all()
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert count(cl.net) == count(ce.net)  # centres are training-only
    with pytest.raises(ConfigError, match="center_loss must be >= 0"):
        TrainConfig.paper(center_loss=-1.0)
