"""Named per-protocol presets of `hybridface evaluate`: defaults, overrides, bad names."""

from __future__ import annotations

import pytest

from hybridface.cli import main
from hybridface.errors import ConfigError
from hybridface.evaluation.presets import PRESETS, apply_overrides, get_preset, preset_for_protocol
from hybridface.evaluation.training import TrainOptions
from hybridface.protocols import PROTOCOLS


def test_every_paper_protocol_has_its_recipe():
    # the recipes that produced the README's Table IV numbers (docs/results/<protocol>/report.md)
    yale = preset_for_protocol("yale-augmented")
    assert (yale.train.epochs, yale.train.augment, yale.train.illumination, yale.train.channels,
            yale.train.batchnorm) == (80, 0.2, "tan_triggs", "grey3", True)
    vid = preset_for_protocol("vidtimit")
    assert (vid.train.epochs, vid.train.augment, vid.train.illumination, vid.train.channels, vid.codewords) == (
        100, 0.2, "none", "rgb", 1)
    assert (vid.train.batchnorm, vid.train.loss, vid.train.margin) == (True, "cosface", None)  # docs/evaluation.md
    assert vid.top_n == 9  # hybrid keeps exhaustive's Rank-1 (docs/evaluation.md)
    assert preset_for_protocol("vidtimit-paper").train == vid.train
    assert preset_for_protocol("folder") is PRESETS["default"] and PRESETS["default"].train == TrainOptions()
    assert {"yale-augmented", "vidtimit", "vidtimit-paper"} <= set(PROTOCOLS) & set(PRESETS)


def test_overrides_change_one_field_and_are_listed():
    yale = get_preset("yale-augmented")
    train, cw, n, over = apply_overrides(yale, train={"epochs": None, "augment": None})
    assert (train, cw, n, over) == (yale.train, yale.codewords, yale.top_n, {})
    train, cw, n, over = apply_overrides(yale, train={"epochs": 3, "augment": 0.2}, codewords=2, top_n=None)
    assert train.epochs == 3 and train.augment == 0.2 and train.illumination == "tan_triggs"
    assert (cw, n) == (2, yale.top_n) and over == {"epochs": 3, "codewords": 2}  # 0.2 is the preset's own
    with pytest.raises(ConfigError, match="unknown training option"):
        apply_overrides(yale, train={"epoch": 3})
    _, cw, _, over = apply_overrides(yale, train={}, codewords="auto")
    assert cw == "auto" and over == {"codewords": "auto"}


def test_codewords_flag_takes_auto_and_refuses_other_words(tmp_path, capsys):
    """``--codewords auto`` parses (about one codeword per 8 templates); a word or an unsupported
    size is argparse's one error line, exit 2, before any data is read."""
    for bad in ("lots", "3"):
        with pytest.raises(SystemExit) as e:
            main(["evaluate", "--protocol", "vidtimit", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                  "--codewords", bad])
        assert e.value.code == 2
        assert "or 'auto'" in capsys.readouterr().err.strip().splitlines()[-1]


def test_unknown_preset_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown preset 'fast'; use one of yale-augmented, vidtimit, vidtimit-paper"):
        get_preset("fast")
    capsys.readouterr()
    assert main(["evaluate", "--protocol", "vidtimit", "--preset", "fast", "--data", str(tmp_path),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'fast'; use one of " in err and "vidtimit-paper" in err and err.count("\n") == 1


def test_loss_and_batchnorm_flags_override_the_preset_and_are_recorded():
    """`--loss` / `--batchnorm` reach the training options as overrides; at their defaults they are
    not overrides (so models cached before the flags existed stay valid)."""
    import argparse

    from hybridface.cli.evaluate import _TRAIN_FLAGS, _command, register

    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    args = ap.parse_args(["evaluate", "--protocol", "vidtimit", "--data", "d", "--out", "o",
                          "--loss", "arcface", "--batchnorm"])
    base = get_preset("default")
    train, _, _, over = apply_overrides(base, train={f: getattr(args, k) for k, f in _TRAIN_FLAGS.items()})
    assert (train.loss, train.batchnorm) == ("arcface", True) and over == {"loss": "arcface", "batchnorm": True}
    plain = ap.parse_args(["evaluate", "--protocol", "vidtimit", "--data", "d", "--out", "o"])
    train, _, _, over = apply_overrides(base, train={f: getattr(plain, k) for k, f in _TRAIN_FLAGS.items()})
    assert (train.loss, train.batchnorm, over) == ("classifier", False, {})
    assert " --batchnorm" in _command(args) and "--batchnorm True" not in _command(args)
    # a preset with BatchNorm (vidtimit) can be run without it
    off = ap.parse_args(["evaluate", "--protocol", "vidtimit", "--data", "d", "--out", "o", "--no-batchnorm",
                         "--loss", "classifier"])
    train, _, _, over = apply_overrides(get_preset("vidtimit"), train={f: getattr(off, k) for k, f in _TRAIN_FLAGS.items()})
    assert (train.batchnorm, train.loss) == (False, "classifier") and over == {"batchnorm": False, "loss": "classifier"}
    assert " --no-batchnorm" in _command(off)
    with pytest.raises(SystemExit):
        ap.parse_args(["evaluate", "--protocol", "vidtimit", "--data", "d", "--out", "o", "--loss", "triplet"])


def test_margin_flag_reaches_the_training_options_and_the_description():
    """`--margin` overrides the preset's (None: the head's own default) and is printed with the loss."""
    import argparse
    from dataclasses import replace

    from hybridface.cli.evaluate import _TRAIN_FLAGS, _command, register

    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    args = ap.parse_args(["evaluate", "--protocol", "vidtimit", "--data", "d", "--out", "o",
                          "--loss", "cosface", "--margin", "0.2"])
    vid = get_preset("vidtimit")
    train, _, _, over = apply_overrides(vid, train={f: getattr(args, k) for k, f in _TRAIN_FLAGS.items()})
    assert (train.loss, train.margin) == ("cosface", 0.2) and over == {"margin": 0.2}  # cosface is the preset's
    assert "--margin 0.2" in _command(args)
    assert "loss cosface (margin 0.2), " in replace(vid, train=train).describe()
    assert "loss cosface, BatchNorm (folded), " in vid.describe() and vid.train.margin is None
    assert "loss" not in get_preset("default").describe()
