"""The one training loop (``training.trainer``): config validation, presets, determinism, early stopping."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from hybridface.errors import ConfigError, DatasetError  # noqa: E402
from hybridface.training.trainer import TrainConfig, stratified_split, train  # noqa: E402


def _data(n_per: int = 8, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 255, (k, 60, 60, 3)).astype(np.float32)
    imgs = np.clip(np.repeat(protos, n_per, 0) + rng.normal(0, 10, (n_per * k, 60, 60, 3)), 0, 255).astype(np.uint8)
    return imgs, [f"id{i // n_per}" for i in range(n_per * k)]


def _weights(net) -> np.ndarray:
    return np.concatenate([v.detach().numpy().ravel() for _, v in sorted(net.state_dict().items())])


@pytest.mark.parametrize("bad, words", [
    (dict(schedule="step"), "lr schedule 'step'"),
    (dict(epochs=0), "epochs, batch_size, patience must be >= 1"),
    (dict(patience=0), "patience must be >= 1"),
    (dict(lr=0.0), "lr > 0"),
    (dict(val_fraction=1.0), "val_fraction must be in [0, 1)"),
    (dict(val_split="kfold"), "val_split 'kfold'"),
    (dict(augment="heavy"), "augmentation 'heavy'; use one of none, paper, strong"),
    (dict(augment_p=1.5), "augmentation probability must be in [0, 1]"),
    (dict(loss="triplet"), "loss 'triplet'; use one of classifier, softmax, arcface, cosface"),
    (dict(center_loss=-1.0), "center_loss must be >= 0"),
    (dict(relation_weight=-0.1), "relation_weight must be >= 0"),
    (dict(distill_weight=-1.0), "distill_weight must be >= 0"),
    (dict(threads=0), "threads must be >= 1"),
    (dict(margin=0.3), "a margin needs --loss arcface or cosface (got loss classifier)"),
    (dict(loss="cosface", margin=1.2), "cosface margin must be in [0, 1), got 1.2"),
    (dict(loss="arcface", margin=-0.1), "arcface margin must be in [0, 1.5708), got -0.1"),
])
def test_a_bad_option_fails_at_construction_with_one_line_naming_it(bad, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**bad)
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        TrainConfig.general(**bad)


def test_presets_hold_the_two_recipes():
    p, g = TrainConfig.paper(), TrainConfig.general(relation_weight=1.0)
    assert (p.loss, p.schedule, p.lr, p.batch_size, p.patience, p.val_split) == \
        ("classifier", "constant", 1e-4, 100, 15, "stratified")
    assert (g.loss, g.schedule, g.lr, g.batch_size, g.patience, g.augment, g.relation_weight) == \
        (None, "onecycle", 2e-3, 128, None, "strong", 1.0)
    assert g.with_(epochs=3).epochs == 3 and g.epochs == 30
    with pytest.raises(ConfigError):
        g.with_(epochs=-1)


def test_same_seed_same_weights_and_another_seed_differs():
    imgs, ids = _data()
    cfg = TrainConfig.paper(epochs=2, lr=1e-3, batch_size=8, progress=False, threads=1, augment="paper")
    a, b = train(cfg, imgs, labels=ids), train(cfg, imgs, labels=ids)
    c = train(cfg.with_(seed=1), imgs, labels=ids)
    assert np.array_equal(_weights(a.net), _weights(b.net))
    assert not np.array_equal(_weights(a.net), _weights(c.net))
    assert a.identities == ("id0", "id1", "id2") and a.num_train + a.num_val == len(imgs)
    assert a.val_accuracy is not None and 0 <= a.train_accuracy <= 1


def test_the_margin_reaches_the_cosface_head():
    """Same seed, same data: the default margin (0.35) and 0.35 given train the same weights, 0.1 others."""
    imgs, ids = _data()
    cfg = TrainConfig.paper(epochs=2, lr=1e-3, batch_size=8, progress=False, threads=1, loss="cosface")
    a, b, c = (train(cfg.with_(margin=m), imgs, labels=ids) for m in (None, 0.35, 0.1))
    assert np.array_equal(_weights(a.net), _weights(b.net))
    assert not np.array_equal(_weights(a.net), _weights(c.net))


def test_early_stopping_and_the_kept_epoch():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (24, 60, 60, 3), dtype=np.uint8)  # noise: validation accuracy cannot keep rising
    ids = [f"id{i % 3}" for i in range(24)]
    r = train(TrainConfig.paper(epochs=30, lr=1e-2, batch_size=8, patience=1, val_fraction=0.3, progress=False,
                                threads=1), imgs, labels=ids)
    assert r.epochs_run < 30 and r.epochs_run - r.best_epoch == 1  # stopped one epoch after the best
    assert r.best["val_acc"] == max(h["val_acc"] for h in r.history)


def test_labels_that_cannot_train():
    imgs, ids = _data()
    with pytest.raises(DatasetError, match="at least 2 identities"):
        train(TrainConfig.paper(epochs=1, progress=False), imgs, labels=["a"] * len(imgs))
    with pytest.raises(ConfigError, match="label on every image"):
        train(TrainConfig.paper(epochs=1, progress=False), imgs, labels=[None] + ids[1:])
    with pytest.raises(ConfigError, match="3 labels for 24 images"):
        train(TrainConfig.paper(epochs=1, progress=False), imgs, labels=ids[:3])


def test_stratified_split_keeps_a_source_image_on_one_side():
    ids = ["a"] * 6 + ["b"] * 6
    groups = [f"{i // 2}" for i in range(12)]  # pairs of augmented copies
    tr, va = stratified_split(ids, groups, 0.34, seed=0)
    assert len(set(tr) | set(va)) == 12 and not set(tr) & set(va)
    assert {groups[i] for i in tr}.isdisjoint({groups[i] for i in va})
