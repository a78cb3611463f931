"""`hybridface evaluate` end to end on a tiny Yale slice, the template cache and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybridface.cli import main
from hybridface.errors import ConfigError, DatasetError
from hybridface.options import SearchOptions

N_SUBJECTS, N_IMAGES = 3, 6


@pytest.fixture(scope="module")
def tiny_yale(dataset, tmp_path_factory) -> Path:
    """3 Extended Yale B subjects x 6 images, linked (not copied) into a temp folder."""
    src = dataset("extended_yale_b")
    root = tmp_path_factory.mktemp("yale") / "extended_yale_b"
    for person in sorted(p for p in src.iterdir() if p.is_dir())[:N_SUBJECTS]:
        (root / person.name).mkdir(parents=True)
        for f in sorted(person.iterdir())[:N_IMAGES]:
            (root / person.name / f.name).symlink_to(f)
    return root


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "evaluate", "--protocol", "yale-augmented", "--data", str(data), "--protocol-option",
            f"subjects={N_SUBJECTS}", "--protocol-option", "variants=2", "--epochs", "1", "--timing-probes", "3",
            "--no-progress", "--out", str(out), *extra]


def test_evaluate_writes_report_and_rerun_uses_the_cache(tiny_yale, reference_npz, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(_args(tiny_yale, out, "--models", "compressed,paper", "--open-set", "--impostor-fraction", "0.34")) == 0
    for name in ("report.md", "results.json", "cmc.png", "time.png"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in data["models"]] == ["compressed", "paper"]
    for m in data["models"]:
        assert [s["strategy"] for s in m["strategies"]] == ["exhaustive", "indexed", "parallel", "hybrid"]
        assert m["num_identities"] == N_SUBJECTS - 1  # one identity held out as impostor
        for s in m["strategies"]:
            assert 0.0 <= s["rank1"] <= s["rank5"] <= 1.0 and len(s["cmc"]) == 20
            assert [p["far_target"] for p in s["open_set"]] == [0.01, 0.001]
            assert all(p["far"] <= p["far_target"] for p in s["open_set"])
        assert m["strategies"][0]["cmc"][N_SUBJECTS - 2] == 1.0  # exhaustive ranks every enrolled identity
    report = (out / "report.md").read_text()
    assert "| compressed | hybrid |" in report and "DIR@FAR" in report and "96.48 %" in report
    # the protocol's preset, with the flags given over it (tests/test_evaluation_presets.py)
    assert "Preset: `yale-augmented`" in report and "**overridden**: epochs=1" in report
    assert data["config"]["preset"] == "yale-augmented" and data["config"]["overrides"] == {"epochs": 1}
    assert data["models"][0]["training"]["augment"] == 0.2  # the preset's, not a flag's
    hybrid = next(r for r in data["table"] if r["model"] == "compressed" and r["scenario"] == "hybrid")
    assert hybrid["recall_at_n"] == data["models"][0]["strategies"][3]["cmc"][4]  # top-N 5
    assert "Shortlist recall@5" in report
    assert "Time per probe against the paper's" in report and "compressed exhaustive 4.35 s vs " in report
    assert data["models"][0]["training"]["cached"] is False
    chunks = sorted((out / ".cache" / "templates").rglob("chunk-*.npz"))
    assert chunks
    # rerun with other strategies: trained model and every template come from the cache
    capsys.readouterr()
    assert main(_args(tiny_yale, out, "--models", "compressed,paper", "--open-set", "--impostor-fraction", "0.34",
                      "--strategies", "exhaustive")) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["models"][0]["training"]["cached"] is True
    assert sorted((out / ".cache" / "templates").rglob("chunk-*.npz")) == chunks
    assert again["models"][0]["strategies"][0]["rank1"] == data["models"][0]["strategies"][0]["rank1"]
    assert "compressed" in capsys.readouterr().out


def test_interrupted_encoding_resumes_from_cache(tiny_yale, reference_npz, tmp_path):
    from hybridface.evaluation.cache import TemplateCache, content_hash
    from hybridface.evaluation.harness import _crops, encode_samples, materialise
    from hybridface.models.zoo import load_encoder
    from hybridface.protocols import get_protocol

    split = get_protocol("yale-augmented", tiny_yale, subjects=N_SUBJECTS, variants=2)
    samples = list(split.gallery)
    paths = sorted({str(s.path) for s in samples})
    crops, failed = _crops(paths, "never", 60, tmp_path, progress=False)
    assert failed == 0
    hashes = {p: content_hash(p) for p in paths}
    real = load_encoder("paper", weights=reference_npz)

    class Interrupting:
        """The real encoder, interrupted (like Ctrl-C) on its second batch."""

        model_id, dim, input_size = real.model_id, real.dim, real.input_size

        def __init__(self, fail_on: int | None) -> None:
            self.calls, self.images, self.fail_on = 0, 0, fail_on

        def encode(self, images):
            self.calls += 1
            if self.calls == self.fail_on:
                raise KeyboardInterrupt
            self.images += len(images)
            return real.encode(images)

    params = {"detect": "never", "size": 60}
    with pytest.raises(KeyboardInterrupt):
        encode_samples(Interrupting(2), samples, crops, TemplateCache(tmp_path, real.model_id, 60), hashes, params,
                       batch=5)
    resumed = Interrupting(None)
    cache = TemplateCache(tmp_path, real.model_id, 60)  # a fresh process: reloaded from disk
    assert len(cache) == 5
    vecs, _ = encode_samples(resumed, samples, crops, cache, hashes, params, batch=5)
    assert resumed.images == len(samples) - 5
    np.testing.assert_allclose(vecs, real.encode(materialise(samples, crops)), atol=1e-5)


def test_bad_input_is_one_line_exit_2(tiny_yale, tmp_path, capsys):
    import torch

    cases = [
        (_args(tiny_yale, tmp_path / "a", "--models", "compressed,nosuchnet"), "unknown model(s) nosuchnet"),
        (_args(tiny_yale, tmp_path / "b", "--strategies", "fastest"), "strategy='fastest' is not valid"),
        (["evaluate", "--protocol", "lfw", "--data", str(tiny_yale), "--out", str(tmp_path / "c")], "unknown protocol 'lfw'"),
        (["evaluate", "--protocol", "yale-augmented", "--data", str(tiny_yale), "--no-progress",
          "--out", str(tmp_path / "d")], "needs 15 subjects"),  # the protocol's default needs 15 identities
        (_args(tmp_path / "nowhere", tmp_path / "e"), "is not a folder"),
    ]
    from hybridface.models.baselines.vggface import build_vggface

    state = build_vggface(width=4, fc_dim=32).state_dict()  # a file for a different (tiny) VGG
    torch.save(state, tmp_path / "vgg_small.pth")
    cases.append((_args(tiny_yale, tmp_path / "f", "--models", "vggface", "--weights",
                        f"vggface={tmp_path / 'vgg_small.pth'}"), "layer 'conv1_1.weight' has shape (4, 3, 3, 3)"))
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


def test_config_checks_without_data(tmp_path):
    from hybridface.evaluation.harness import EvalConfig, run_evaluation

    with pytest.raises(ConfigError, match="top_n=0 is not valid"):
        run_evaluation(EvalConfig(protocol="folder", data_dir=tmp_path, cache_dir=tmp_path,
                                  search=SearchOptions(top_n=0)))
    with pytest.raises(DatasetError):
        run_evaluation(EvalConfig(protocol="folder", data_dir=tmp_path, cache_dir=tmp_path))


def test_indexed_scenario_ranks_only_its_shortlist(tiny_yale, reference_npz, tmp_path):
    """With N < identities the indexed/hybrid rows must not quietly become exhaustive search."""
    out = tmp_path / "report"
    assert main(_args(tiny_yale, out, "--models", "paper", "--top-n", "1",
                      "--strategies", "exhaustive,indexed,hybrid")) == 0
    rows = {s["strategy"]: s for s in json.loads((out / "results.json").read_text())["models"][0]["strategies"]}
    full = rows["exhaustive"]["distance_evaluations_per_probe"]
    for name in ("indexed", "hybrid"):
        s = rows[name]
        assert s["distance_evaluations_per_probe"] < full
        assert s["cmc"][-1] == s["cmc"][0]  # one shortlisted identity: nothing ranked below it
    assert rows["exhaustive"]["cmc"][N_SUBJECTS - 1] == 1.0


def test_channels_rgb_reaches_the_trained_model_and_report(tiny_yale, tmp_path):
    from hybridface.models.card import load_card

    out = tmp_path / "rgb"
    assert main(_args(tiny_yale, out, "--models", "compressed", "--strategies", "exhaustive",
                      "--channels", "rgb", "--illumination", "clahe")) == 0
    cards = [load_card(d)[0] for d in (out / ".cache" / "models").iterdir() if (d / "model.json").is_file()]
    assert [c.preprocessing["channels"] for c in cards] == ["rgb"]
    assert cards[0].preprocessing["illumination"] == "clahe"
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["train"]["channels"] == "rgb"
    report = (out / "report.md").read_text()
    assert "input rgb, illumination clahe" in report
    assert "**Subset, not the full `yale-augmented` protocol**: subjects=3, variants=2" in report


def test_denoise_and_margin_reach_the_trained_model_and_report(tiny_yale, tmp_path):
    """`--denoise median3` is stored in the trained model's card (so inference denoises too) and
    printed in the report; `--loss cosface --margin 0.2` is recorded with it."""
    from hybridface.models.card import load_card
    from hybridface.models.encoders import load_model

    out = tmp_path / "dn"
    assert main(_args(tiny_yale, out, "--models", "compressed", "--strategies", "exhaustive",
                      "--denoise", "median3", "--loss", "cosface", "--margin", "0.2", "--batchnorm")) == 0
    dirs = [d for d in (out / ".cache" / "models").iterdir() if (d / "model.json").is_file()]
    assert [load_card(d)[0].preprocessing.get("denoise") for d in dirs] == ["median3"]
    assert load_model(dirs[0]).spec.denoise == "median3"
    data = json.loads((out / "results.json").read_text())
    assert (data["config"]["train"]["denoise"], data["config"]["train"]["margin"]) == ("median3", 0.2)
    report = (out / "report.md").read_text()
    assert "illumination tan_triggs after median3 denoising" in report and "loss cosface (margin 0.2)" in report


def test_scaling_section_and_speedup_plot(tiny_yale, reference_npz, tmp_path, capsys):
    out = tmp_path / "scale"
    assert main(_args(tiny_yale, out, "--models", "paper", "--scaling", "20,300", "--search-timing-probes", "5")) == 0
    data = json.loads((out / "results.json").read_text())
    pts = data["models"][0]["scaling"]
    assert [p["templates"] for p in pts] == [20, 300]
    assert set(pts[1]["ms_per_probe"]) == {"exhaustive", "indexed", "parallel", "hybrid"}
    report = (out / "report.md").read_text()
    assert "## Scaling" in report and "| 300 |" in report and "`hybrid` overtakes `exhaustive`" in report
    assert (out / "speedup.png").stat().st_size > 0
    capsys.readouterr()
    assert main(_args(tiny_yale, tmp_path / "bad", "--models", "paper", "--scaling", "ten")) == 2
    err = capsys.readouterr().err
    assert "not a comma list of gallery sizes" in err and err.count("\n") == 1


def test_flip_templates_are_mirror_invariant(tiny_yale, reference_npz, tmp_path):
    from hybridface.evaluation.flip import FlipEncoder
    from hybridface.models.zoo import load_encoder

    enc = FlipEncoder(load_encoder("paper", weights=reference_npz))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (3, 60, 60, 3), dtype=np.uint8)
    a, b = enc.encode(x), enc.encode(np.ascontiguousarray(x[:, :, ::-1]))
    assert a.shape == (3, 60) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # the image and its mirror give one template
    np.testing.assert_allclose(enc.encode(x[0]), a[:1], atol=1e-5)
    assert not np.allclose(a, enc.inner.encode(x), atol=1e-3)
    out = tmp_path / "flip"
    assert main(_args(tiny_yale, out, "--models", "paper", "--strategies", "exhaustive", "--flip")) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["models"][0]["model_id"].endswith("+flip") and data["config"]["flip"] is True
    assert "test-time flip" in (out / "report.md").read_text()
