"""The size / accuracy frontier of the face models: a chart and a table from measured results.

Reads the JSON that ``benchmarks/unseen.py --json`` (Rank-1 per unseen rotation, ONNX bytes,
parameters) and ``benchmarks/resnet.py --json`` (faces/s at batch 1 and 64, agreement with the
``resnet`` teacher) wrote, and draws Rank-1 against model bytes, one panel per rotation
(``docs/results/models/frontier.png``), and prints the markdown table for ``docs/models.md``.
Models are matched by name (``resnet.py``'s ``"resnet (ORT fp32)"`` is ``resnet``). dlib's size is
its installed ``.dat`` file. Nothing is typed in by hand.

    python benchmarks/frontier.py --unseen docs/results/models/frontier_unseen.json \
        --speed docs/results/models/frontier_speed.json --png docs/results/models/frontier.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


#: the zoo's distilled students: int8 files whose names do not say so
SHIPPED_STUDENTS = ("resnet-small", "resnet-tiny")


def _key(name: str) -> str:
    return name.split(" (")[0]


def load(unseen: Path, speed: Path | None) -> tuple[list[str], dict[str, dict]]:
    """``(rotations, {model: {"bytes", "parameters", "rank1": {rotation: r}, "speed", "agreement"}})``."""
    data = json.loads(unseen.read_text())
    rotations: list[str] = []
    models: dict[str, dict] = {}
    for row in data["rows"]:
        if row["rotation"] not in rotations:
            rotations.append(row["rotation"])
        m = models.setdefault(row["model"], {"bytes": row["onnx_bytes"], "parameters": row["parameters"],
                                             "rank1": {}, "speed": None, "agreement": None})
        m["rank1"][row["rotation"]] = 100 * row["rank1"]
    if "dlib" in models and models["dlib"]["bytes"] is None:
        from hybridface.errors import HybridFaceError
        from hybridface.models.baselines.dlib_encoder import default_model_files

        try:
            models["dlib"]["bytes"] = Path(default_model_files()[0]).stat().st_size
        except (ImportError, OSError, HybridFaceError):  # dlib's files not installed: no dlib point in the chart
            pass
    if speed is not None:
        sp = json.loads(speed.read_text())
        for name, rates in sp["faces_per_s"].items():
            if _key(name) in models:
                models[_key(name)]["speed"] = rates
        for name, agr in sp.get("agreement", {}).items():
            if _key(name) in models:
                models[_key(name)]["agreement"] = agr
    return rotations, models


def table(rotations: list[str], models: dict[str, dict], threads: int | None = None) -> str:
    lines = ["| model | parameters | bytes | " + " | ".join(f"Rank-1 {r}" for r in rotations)
             + " | centred cos with resnet | faces/s b1 | faces/s b64 |",
             "|---|---:|---:|" + "---:|" * len(rotations) + "---:|---:|---:|"]
    for name, m in sorted(models.items(), key=lambda kv: -(kv[1]["bytes"] or 0)):
        sp, ag = m["speed"] or {}, m["agreement"] or {}
        cells = [name, f"{m['parameters']:,}" if m["parameters"] else "-", f"{m['bytes']:,}" if m["bytes"] else "-",
                 *(f"{m['rank1'][r]:.1f} %" if r in m["rank1"] else "-" for r in rotations),
                 f"{ag['centred_cos']:.3f}" if ag else "-", f"{sp['1']:.0f}" if sp else "-",
                 f"{sp['64']:.0f}" if sp else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(rotations: list[str], models: dict[str, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rotations), figsize=(5 * len(rotations), 4.4), sharey=True)
    axes = [axes] if len(rotations) == 1 else list(axes)
    for ax, r in zip(axes, rotations):
        for name, m in models.items():
            if not m["bytes"] or r not in m["rank1"]:
                continue
            student = name in SHIPPED_STUDENTS
            family = ("tab:red" if name == "dlib" else "tab:blue" if name.startswith("resnet") and not student
                      else "tab:orange" if name in ("general", "paper") else "tab:green")
            int8 = "int8" in name or student
            ax.scatter(m["bytes"], m["rank1"][r], s=40, marker="s" if int8 else "o",
                       facecolors=family if int8 or name == "dlib" else "none", edgecolors=family)
            ax.annotate(name, (m["bytes"], m["rank1"][r]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if "dlib" in models and r in models["dlib"]["rank1"]:
            d = models["dlib"]["rank1"][r]
            ax.axhline(d, color="tab:red", lw=0.8, ls="--")
            ax.axhline(d - 2, color="tab:red", lw=0.6, ls=":")
        ax.axvline(2_000_000, color="grey", lw=0.6, ls=":")
        ax.axvline(500_000, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_title(f"unseen: {r}")
        ax.set_xlabel("model file bytes (log)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Rank-1 % (dashed: dlib; dotted: dlib − 2)")
    axes[-1].text(0.98, 0.02, "squares: int8, circles: fp32\nred dlib, blue resnet, green students,\norange paper net",
                  transform=axes[-1].transAxes, ha="right", va="bottom", fontsize=7)
    fig.suptitle("Size vs Rank-1 on never-seen people (dotted verticals: 500 KB and 2 MB budgets)", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unseen", required=True, type=Path, help="JSON from benchmarks/unseen.py --json")
    ap.add_argument("--speed", type=Path, default=None, help="JSON from benchmarks/resnet.py --json")
    ap.add_argument("--png", type=Path, default=Path("docs/results/models/frontier.png"))
    args = ap.parse_args(argv)
    rotations, models = load(args.unseen, args.speed)
    chart(rotations, models, args.png)
    print(table(rotations, models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
