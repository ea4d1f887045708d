"""``models/REPORT.md`` and its plots: every model side by side, the targets checked, and a
"which fusion to choose" section computed from the measured numbers.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from training import tiers_report, verdicts  # noqa: E402
from training.evaluate import MODALITIES, NOISE_LEVELS, Evaluation  # noqa: E402

PAIRS = ("image+audio", "image+text", "audio+text")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def check_targets(
    evals: list[Evaluation], total_train_seconds: float, one_run: bool = True
) -> list[tuple[str, bool, str]]:
    """The quality and time targets of DESIGN §7, each with the numbers behind the verdict."""
    fusions = [e for e in evals if e.fusion != "unimodal"]
    unimodal = {e.modalities[0]: e for e in evals if e.fusion == "unimodal"}
    rows: list[tuple[str, bool, str]] = []
    if fusions and unimodal:
        best_f = max(fusions, key=lambda e: e.accuracy)
        best_u = max(unimodal.values(), key=lambda e: e.accuracy)
        gap = best_f.accuracy - best_u.accuracy
        rows.append(
            (
                "best fusion beats best single modality by >= 10 points",
                gap >= 0.10,
                f"{best_f.name} {_pct(best_f.accuracy)} vs {best_u.name} {_pct(best_u.accuracy)}: "
                f"{100 * gap:+.1f} points",
            )
        )
        for e in fusions:
            worst = []
            ok = True
            for pair in PAIRS:
                mods = pair.split("+")
                if pair not in e.subsets or not all(m in unimodal for m in mods):
                    continue
                ref = max(unimodal[m].accuracy for m in mods)
                margin = e.subsets[pair] - ref
                ok &= margin >= 0
                worst.append(f"{pair} {_pct(e.subsets[pair])} vs {_pct(ref)} ({100 * margin:+.1f})")
            rows.append(
                (f"{e.name}: with one modality missing >= best remaining unimodal", ok, "; ".join(worst))
            )
    rows.append(
        (
            "training everything (wall time of the command) <= 15 min on 2 CPU cores",
            total_train_seconds <= 900,
            f"{total_train_seconds / 60:.1f} min"
            + (
                "" if one_run else " (no one run trained them all: the sum of each model's own training time)"
            ),
        )
    )
    return rows


def choose(evals: list[Evaluation]) -> list[str]:
    """Recommendations that follow from the table, not from opinion."""
    fusions = [e for e in evals if e.fusion != "unimodal"]
    if not fusions:
        return []

    def missing(e: Evaluation) -> float:
        pairs = [e.subsets[p] for p in PAIRS if p in e.subsets]
        return sum(pairs) / len(pairs)

    def robust(e: Evaluation) -> float:
        return sum(e.relative_robustness.values()) / len(e.relative_robustness)

    best = max(fusions, key=lambda e: e.accuracy)
    best_missing = max(fusions, key=missing)
    most_robust = max(fusions, key=robust)
    fastest = min(fusions, key=lambda e: e.latency_ms["batch_1"])
    smallest = min(fusions, key=lambda e: e.onnx_bytes)
    lines = [
        f"- **Highest clean accuracy:** `{best.name}` ({_pct(best.accuracy)}%).",
        f"- **Best when a modality is missing** (mean over the three pairs): `{best_missing.name}` "
        f"({_pct(missing(best_missing))}%).",
        f"- **Most robust to noise** (mean relative robustness): `{most_robust.name}` "
        f"({robust(most_robust):.3f}).",
        f"- **Fastest at batch 1:** `{fastest.name}` ({fastest.latency_ms['batch_1']:.2f} ms); "
        f"**smallest:** `{smallest.name}` ({smallest.onnx_bytes / 1e6:.2f} MB).",
    ]
    gated = [e for e in fusions if e.fusion == "gated"]
    if gated:
        g = gated[0]
        lines.append(
            f"- **Explanations for free:** `{g.name}` exports its gate weights, so a per-modality "
            f"contribution costs no extra inference ({_pct(best.accuracy - g.accuracy)} points below "
            f"the best on the benchmark); other models need one extra run per present modality."
        )
    lines.append(
        f"- **Default recommendation:** `{best.name}` unless latency or explanations dominate; "
        "the serving default in the README examples follows this table."
    )
    return lines


def plot(evals: list[Evaluation], out: Path) -> list[str]:
    """Robustness curves (one panel per modality) and subset accuracies; returns file names."""
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    colors = {e.name: plt.get_cmap("tab10")(i % 10) for i, e in enumerate(evals)}  # one colour per model
    for ax, modality in zip(axes, MODALITIES, strict=True):
        for e in evals:
            if modality in e.robustness:
                style = "--" if e.fusion == "unimodal" else "-"
                ax.plot(NOISE_LEVELS, e.robustness[modality], style, marker="o", ms=3, color=colors[e.name])
        ax.set_title(f"{modality} noise")
        ax.set_xlabel("noise level")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    handles = [
        plt.Line2D([], [], color=colors[e.name], ls="--" if e.fusion == "unimodal" else "-", label=e.name)
        for e in evals
    ]
    fig.legend(handles=handles, loc="lower center", ncols=len(evals), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(out / "robustness.png", dpi=110)
    plt.close(fig)
    files.append("robustness.png")

    fusions = [e for e in evals if e.fusion != "unimodal"]
    if fusions:
        names = list(fusions[0].subsets)
        fig, ax = plt.subplots(figsize=(11, 3.8))
        width = 0.8 / len(fusions)
        for i, e in enumerate(fusions):
            xs = [j + i * width for j in range(len(names))]
            ax.bar(xs, [e.subsets.get(n, 0.0) for n in names], width, label=e.name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20, fontsize=8)
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, ncols=len(fusions))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "subsets.png", dpi=110)
        plt.close(fig)
        files.append("subsets.png")
    return files


def write_report(evals: list[Evaluation], out: Path, info: dict[str, Any]) -> Path:
    """Write ``REPORT.md`` (+ plots) into the model repository ``out``."""
    plots = plot(evals, out)
    # the whole training command (data load, features, training, export, evaluation) when known
    total = float(info.get("wall_seconds", sum(e.train_seconds for e in evals)))
    lines = [
        "# Fusion report",
        "",
        f"Data: `{info.get('data', 'default')}`, fingerprint `{info.get('fingerprint', '')[:16]}`, "
        f"{info.get('n_train', '?')} train / {info.get('n_val', '?')} val / {info.get('n_test', '?')} test. "
        f"Seed {info.get('seed', 0)}, {info.get('epochs', '?')} epochs. Machine: {platform.machine()}, "
        f"{info.get('threads', 1)} torch thread(s), onnxruntime on CPU (1 thread for latency). "
        f"Command: `{info.get('command', 'python -m training train --fusion all')}`."
        + (
            f" Graphs then rewritten by `{info['optimized']}` (same outputs; sizes and latencies are of the"
            " rewritten files, measured on this machine)."
            if info.get("optimized")
            else ""
        )
        + (
            " Not one training run: the models were trained on different builds of the data ("
            + "; ".join(
                f"`{fp[:16]}`: " + ", ".join(f"`{n}`" for n in names)
                for fp, names in info["trained_on"].items()
            )
            + "); each manifest records its own, and every figure below is measured on the data above."
            if info.get("trained_on")
            else ""
        ),
        "",
        "## Summary (test split, all modalities present)",
        "",
        "| model | fusion | accuracy % | params | ONNX MB | latency b=1 ms | b=64 ms | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in evals:
        lines.append(
            f"| `{e.name}` | {e.fusion} | {_pct(e.accuracy)} | {e.params:,} | {e.onnx_bytes / 1e6:.2f} | "
            f"{e.latency_ms['batch_1']:.2f} | {e.latency_ms['batch_64']:.2f} | {e.train_seconds:.0f} |"
        )
    subset_names = ["image", "audio", "text", *PAIRS, "image+audio+text"]
    lines += ["", "## Accuracy % on each modality subset", "", "| model | " + " | ".join(subset_names) + " |"]
    lines.append("|---|" + "---:|" * len(subset_names))
    for e in evals:
        cells = [_pct(e.subsets[n]) if n in e.subsets else "" for n in subset_names]
        lines.append(f"| `{e.name}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Robustness",
        "",
        f"Accuracy as one modality gets noisier (levels {', '.join(str(x) for x in NOISE_LEVELS)}; "
        "image: Gaussian noise + occlusion, audio: white noise down to low SNR, text: character "
        "corruption), the others clean. Relative robustness = area under that curve over noise "
        "levels in [0, 1] (MultiBench's definition; 1.0 = perfect at every level).",
        "",
        "| model | " + " | ".join(f"{m} rel. robustness" for m in MODALITIES) + " |",
        "|---|" + "---:|" * 3,
    ]
    for e in evals:
        cells = [f"{e.relative_robustness[m]:.3f}" if m in e.relative_robustness else "" for m in MODALITIES]
        lines.append(f"| `{e.name}` | " + " | ".join(cells) + " |")
    lines += [""] + [f"![{p}]({p})" for p in plots]
    ev = info.get("evaluation")
    targets = check_targets(evals, total, one_run="wall_seconds" in info)
    advice = choose(evals)
    if ev and ev.get("models"):
        reliability = tiers_report.plot_reliability(ev, out)
        for section in (
            tiers_report.tiers_section(ev),
            tiers_report.calibration_section(ev, reliability),
            tiers_report.conflict_section(ev),
            tiers_report.margins_section(ev),
            tiers_report.seeds_section(info.get("seeds"), info.get("trained_on")),
        ):
            lines += ["", *section] if section else []
        targets += verdicts.targets(ev)
        advice = verdicts.choose(ev) + [
            line for line in advice if "Fastest" in line or "Explanations" in line
        ]
    lines += ["", "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    for target, ok, detail in targets:
        lines.append(f"| {target} | {'yes' if ok else '**no**'} | {detail} |")
    lines += ["", "## Which fusion to choose", "", *advice, ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
