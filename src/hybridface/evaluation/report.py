"""Write an evaluation's ``report.md`` (the paper's Table IV layout), ``results.json``,
``cmc.png`` (rank 1–20, one line per model) and ``time.png`` (time per probe, log scale)."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path

#: Table IV of Meddad et al. (2020): (time per probe in s, Rank-1 %) per protocol/model/scenario.
PAPER: dict[str, dict[str, dict[str, tuple[float | None, float | None]]]] = {
    "yale-augmented": {
        "compressed": {"exhaustive": (4.35, 96.48), "indexed": (1.45, None), "parallel": (1.37, None),
                       "hybrid": (1.12, 96.50)},
        "vggface": {"exhaustive": (950.0, 99.82)},
        "inception_v3": {"exhaustive": (9.14, 74.10)},
    },
    "vidtimit-paper": {
        "compressed": {"exhaustive": (11.0, 99.90), "hybrid": (3.0, 99.30)},
        "vggface": {"exhaustive": (None, 100.0)},
        "inception_v3": {"exhaustive": (None, 100.0)},
    },
    "vidtimit": {  # temporal split: the paper's figures are quoted for reference (its split was random)
        "compressed": {"exhaustive": (11.0, 99.90), "hybrid": (3.0, 99.30)},
        "vggface": {"exhaustive": (None, 100.0)},
        "inception_v3": {"exhaustive": (None, 100.0)},
    },
}
PAPER_NOTE = ("Paper figures: Meddad et al. (2020), Table IV, as quoted in issue 5 (Yale hybrid N = 5; "
              "VidTIMIT hybrid N = 38; parallel = 4 threads). Blank = not given.")


def machine_info() -> dict[str, object]:
    """CPU model, core counts and library versions of this machine."""
    from importlib import metadata

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("hybridface", "numpy", "torch", "onnxruntime", "opencv-python-headless", "faiss-cpu", "dlib-bin", "ray"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def result_to_dict(result, *, command: str = "") -> dict:
    """JSON-ready dict of an `EvalResult` (every number), plus the command and the machine."""
    d = asdict(result)
    d["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in d["config"].items()}
    d["command"] = command
    d["machine"] = machine_info()
    return d


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _pct(x: float | None, has_weights: bool = True) -> str:
    if not has_weights:
        return "n/a (no weights)"
    return "–" if x is None else f"{100 * x:.2f} %"


def _recall_at_n(s, top_n: int) -> float | None:
    """Shortlist recall@N of an indexed/hybrid row: share of probes whose true identity is among
    the N identities the index kept (they are all ranked, so it is the row's CMC at N)."""
    if s.strategy not in ("indexed", "hybrid") or not s.cmc:
        return None
    return s.cmc[min(top_n, len(s.cmc)) - 1]


def table_rows(result) -> list[dict]:
    """One row per model × scenario with the Table IV quantities."""
    rows = []
    paper = PAPER.get(result.config.protocol, {})
    for m in result.models:
        base = next((s for s in m.strategies if s.strategy == "exhaustive"), None)
        for s in m.strategies:
            ext, search = m.extraction.mean_ms, s.search.mean_ms
            total = ext + search
            p_time, p_rank = paper.get(m.name, {}).get(s.strategy, (None, None))
            rows.append({
                "model": m.name, "scenario": s.strategy, "extraction_ms": ext, "search_ms": search, "total_ms": total,
                "batch_search_ms": s.batch_ms_per_probe, "rank1": s.rank1, "rank5": s.rank5,
                "speedup_search": base.search.mean_ms / search if base and search > 0 else None,
                "speedup_total": (ext + base.search.mean_ms) / total if base and total > 0 else None,
                "recall_at_n": _recall_at_n(s, result.config.search.top_n),
                "paper_time_s": p_time, "paper_rank1": p_rank, "has_weights": m.has_weights,
                "templates": m.templates,
            })
    return rows


def _subset_note(cfg) -> list[str]:
    """A bold warning (plus a blank line) when protocol options or a probe limit shrink the protocol."""
    parts = [f"{k}={v}" for k, v in sorted(dict(cfg.protocol_options).items())]
    if cfg.limit_probes is not None:
        parts.append(f"probes limited to {cfg.limit_probes}")
    if not parts:
        return []
    return [f"**Subset, not the full `{cfg.protocol}` protocol**: {', '.join(parts)} (the protocol's defaults "
            "otherwise); compare with full-protocol figures only with that in mind.", ""]


def _preset_lines(cfg) -> list[str]:
    """The recipe line: preset name, its training options and any value given over it."""
    if not cfg.preset:
        return []
    t = cfg.train
    over = ", ".join(f"{k}={v}" for k, v in dict(cfg.overrides).items())
    from hybridface.evaluation.training import illumination_text, objective_parts

    extras = "".join(f", {part}" for part in objective_parts(t))
    return [f"Preset: `{cfg.preset}` — compressed model trained {t.epochs} epochs ({t.lr_schedule} lr {t.lr}, "
            f"patience {t.patience}, val fraction {t.val_fraction}), input {t.channels}, illumination "
            f"{illumination_text(t)}, augment {t.augment}{extras}; LBG codewords {cfg.codewords}, "
            f"top-N {cfg.search.top_n}" + (f"; **overridden**: {over}" if over else "") + ".", ""]


def _versus_paper(result) -> list[str]:
    """How many times faster than the paper each scenario with a paper time is (total per probe)."""
    parts = [f"{r['model']} {r['scenario']} {r['paper_time_s']:g} s vs {r['total_ms']:.2f} ms "
             f"({1000 * r['paper_time_s'] / r['total_ms']:,.0f}×)"
             for r in table_rows(result) if r["paper_time_s"] and r["total_ms"] > 0]
    if not parts:
        return []
    return ["Time per probe against the paper's (feature extraction + search; the paper's machine, not this one): "
            + "; ".join(parts) + ".", ""]


def _scaling_lines(result) -> list[str]:
    """The scaling section: ms per probe per strategy at each replicated gallery size."""
    from hybridface.evaluation.scaling import overtakes

    m = next((m for m in result.models if m.scaling), None)
    if m is None:
        return []
    cfg = result.config
    pts = m.scaling
    strategies = list(pts[0].ms_per_probe)
    lines = ["## Scaling", "",
             f"`{m.name}` gallery replicated to each size: noisy copies (σ = {cfg.scaling_noise} per dimension, "
             f"then L2-normalised) of every identity under new names; {pts[0].probes_timed} real probes searched one "
             f"per call (k = 1); top-N = {cfg.search.top_n}, workers = {cfg.search.workers}, "
             f"codewords = {cfg.codewords}.", "",
             "| Templates | Identities | " + " | ".join(f"{s} (ms)" for s in strategies) + " | "
             + " | ".join(f"speed-up {s}" for s in strategies if s != "exhaustive") + " | codebook build (s) |",
             "|" + "---:|" * (2 + 2 * len(strategies))]
    for p in pts:
        lines.append(f"| {p.templates:,} | {p.identities:,} | "
                     + " | ".join(_fmt(p.ms_per_probe[s], 3) for s in strategies) + " | "
                     + " | ".join(f"{_fmt(p.speedup(s))}×" for s in strategies if s != "exhaustive")
                     + f" | {_fmt(p.index_build_s.get('codebooks'), 1)} |")
    lines.append("")
    for s in strategies:
        if s == "exhaustive":
            continue
        at = overtakes(pts, s)
        lines.append(f"- `{s}` overtakes `exhaustive` (≥ 1.05× faster) " + (
            f"from {at:,} templates on (faster at every measured size from there)." if at is not None
            else f"at none of the measured sizes (up to {pts[-1].templates:,} templates)."))
    lines += ["", "![speed-up](speedup.png)", ""]
    return lines


def plot_speedup(result, path: Path) -> bool:
    """``speedup.png``: speed-up over exhaustive against gallery size (log x); False if no scaling."""
    m = next((m for m in result.models if m.scaling), None)
    if m is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p.templates for p in m.scaling]
    for s in m.scaling[0].ms_per_probe:
        ax.plot(xs, [p.speedup(s) for p in m.scaling], marker="o", label=s)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("gallery templates")
    ax.set_ylabel("speed-up over exhaustive (search)")
    ax.set_title(f"Speed-up vs gallery size — {result.config.protocol} ({m.name})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render_markdown(result, *, command: str, machine: dict) -> str:
    cfg = result.config
    lines = [f"# Evaluation: `{cfg.protocol}`", "",
             "Regenerate with:", "", "```", command, "```", "",
             f"Split: {result.split_summary}.", "",
             *_subset_note(cfg),
             "Files in which no face was found are dropped from both sides (counted under Models).", "",
             *_preset_lines(cfg),
             f"Search: top-N = {cfg.search.top_n} (indexed, hybrid), workers = {cfg.search.workers} (parallel, hybrid), "
             f"LBG codewords per identity = {cfg.codewords}{'; test-time flip (image + mirror)' if cfg.flip else ''}. Times are per probe image, one probe per call "
             f"(search: mean over up to {cfg.search_timing_probes} evenly spaced probes searched one at a time, "
             f"accuracy over all probes; feature extraction: up to {cfg.timing_probes} probes encoded one at a time). Speed-up = that model's exhaustive time / this scenario's time.", "",
             "## Table IV layout", "",
             "| Model | Scenario | Feature extraction (ms) | Search (ms) | Total (ms) | Rank-1 | Rank-5 | "
             f"Shortlist recall@{cfg.search.top_n} | Speed-up (search) | Speed-up (total) | Paper time/probe (s) | "
             "Paper Rank-1 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table_rows(result):
        lines.append(
            f"| {r['model']} | {r['scenario']} | {_fmt(r['extraction_ms'])} | {_fmt(r['search_ms'], 3)} | "
            f"{_fmt(r['total_ms'])} | {_pct(r['rank1'], r['has_weights'])} | {_pct(r['rank5'], r['has_weights'])} | "
            f"{_pct(r['recall_at_n'], r['has_weights'])} | "
            f"{_fmt(r['speedup_search'])}× | {_fmt(r['speedup_total'])}× | {_fmt(r['paper_time_s'])} | "
            f"{'' if r['paper_rank1'] is None else _fmt(r['paper_rank1']) + ' %'} |")
    lines += ["", PAPER_NOTE, ""]
    lines += _versus_paper(result)
    lines += _scaling_lines(result)
    lines += ["## Models", "", "| Model | Model id | Dim | Gallery | Probes | Identities | Files dropped (no face) | Batch encode (ms/img) | Notes |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for m in result.models:
        note = "" if m.has_weights else ("no weights: random initialisation, real architecture; Rank-1 n/a; "
                                         "search timed on random templates of the same size")
        if m.training:
            t = m.training
            note = (f"trained here on the gallery side: {t.get('epochs_run')} epochs (best {t.get('best_epoch')}), "
                    f"lr {t.get('lr')}, input {t.get('channels', 'grey3')}, illumination {t.get('illumination')}, "
                    f"augment {t.get('augment')}, val acc {_fmt(t.get('val_accuracy'), 4)}, "
                    f"{t.get('seconds')} s{' (cached)' if t.get('cached') else ''}")
        lines.append(f"| {m.name} | `{m.model_id[:24]}` | {m.dim} | {m.num_gallery} | {m.num_probes} | "
                     f"{m.num_identities} | {m.skipped_files} | {_fmt(m.encode_batch_ms_per_image, 3)} | {note} |")
    if cfg.open_set:
        lines += ["", "## Open set (DIR@FAR)", "",
                  "| Model | Scenario | Impostor probes | FAR target | Threshold (cos dist) | FAR | DIR |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for m in result.models:
            for s in m.strategies:
                for p in s.open_set:
                    lines.append(f"| {m.name} | {s.strategy} | {p['num_impostors']} | {100 * p['far_target']:.1f} % | "
                                 f"{p['threshold']:.4f} | {100 * p['far']:.2f} % | {100 * p['dir']:.2f} % |")
    lines += ["", "## Plots", "", "![CMC](cmc.png)", "", "![time per probe](time.png)", "",
              "## Machine", "", f"- CPU: {machine['cpu']} ({machine['logical_cores']} logical cores, "
              f"{machine['usable_cores']} usable)", f"- Python {machine['python']} on {machine['platform']}",
              "- " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
              f"- wall time of the whole run: {result.seconds:.0f} s", ""]
    return "\n".join(lines)


def plot_cmc(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in result.models:
        s = next((s for s in m.strategies if s.cmc), None)
        if s is None or not m.has_weights:
            continue
        ax.plot(range(1, len(s.cmc) + 1), [100 * c for c in s.cmc], marker="o", ms=3, label=f"{m.name} ({s.strategy})")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.set_title(f"CMC — {result.config.protocol}")
    ax.set_xticks(range(1, result.config.max_rank + 1, 2 if result.config.max_rank > 10 else 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_time(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = table_rows(result)
    models = list(dict.fromkeys(r["model"] for r in rows))
    scen = list(dict.fromkeys(r["scenario"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    width = 0.8 / max(len(scen), 1)
    for ax, key, title in ((axes[0], "search_ms", "search only"), (axes[1], "total_ms", "feature extraction + search")):
        for j, sc in enumerate(scen):
            vals = [next((r[key] for r in rows if r["model"] == m and r["scenario"] == sc), np.nan) for m in models]
            ax.bar(np.arange(len(models)) + j * width, vals, width, label=sc)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(models)) + width * (len(scen) - 1) / 2, models, rotation=15)
        ax.set_ylabel("ms per probe (log)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Time per probe — {result.config.protocol}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result, out_dir: str | Path, *, command: str) -> dict[str, Path]:
    """Write ``report.md``, ``results.json``, ``cmc.png`` and ``time.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result_to_dict(result, command=command)
    data["table"] = table_rows(result)
    paths = {"json": out / "results.json", "md": out / "report.md", "cmc": out / "cmc.png", "time": out / "time.png"}
    paths["json"].write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(result, command=command, machine=data["machine"]), encoding="utf-8")
    plot_cmc(result, paths["cmc"])
    plot_time(result, paths["time"])
    if plot_speedup(result, out / "speedup.png"):
        paths["speedup"] = out / "speedup.png"
    return paths
