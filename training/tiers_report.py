"""The report's sections on tiers, calibration, conflicts, paired margins and seeds.

Everything here reads the dict of :func:`training.tiers_eval.evaluate_repository` (kept in
``report.json``), so a rebuilt report draws the same tables and plots without the data, and
every sentence of the "how to choose" part is computed from those numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from app.agreement import RULES_OUT_BELOW  # noqa: E402
from app.media import MODALITIES  # noqa: E402
from training.metrics import ECE_BINS, N_BOOT  # noqa: E402
from training.tiers_eval import TIERS  # noqa: E402

Ev = Mapping[str, Any]
BRANCHED = ("late", "gated")
"""Fusions whose branches (the model with a one-hot mask) are drawn and tabled on their own."""
CONFLICT_TARGET = 0.95
ECE_TARGET = 0.03
MIN_BIN = 10
"""Reliability bins with fewer samples are left out of the plot (never out of the ECE)."""
MISSING_LOSS_WHY = {
    "early": (
        "data-level fusion (`EarlyFusion` in `training/fusion.py`): a modality alone reaches its one "
        "MLP as average-pooled pixels, a time-pooled log-mel spectrogram or a position-free bag of byte "
        "n-grams, with no encoder of its own, while each baseline reads it through a CNN. With "
        "modalities missing, use `intermediate`, `late` or `gated`, or the baseline."
    ),
}
"""Why a kind of fusion loses to the unimodal baselines with modalities missing: a loss the
report marks significant is explained by its kind's design (issue 10), or said to be unexplained."""


def ci(stat: Mapping[str, Any] | None) -> str:
    """``81.3 [79.5, 83.0]`` (percent), or empty when there is no number."""
    if not stat or not stat.get("n"):
        return ""
    lo, hi = stat["ci"]
    return f"{100 * stat['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _fusions(ev: Ev) -> dict[str, Any]:
    return {n: m for n, m in ev["models"].items() if m["fusion"] != "unimodal"}


def _tier(m: Mapping[str, Any], tier: str) -> Mapping[str, Any]:
    t: Mapping[str, Any] = m["tiers"].get(tier, {})
    return t


def tiers_section(ev: Ev) -> list[str]:
    """Accuracy per tier, and the audio-only / image-only paths the targets name (when measured)."""
    tiers = [t for t in TIERS if t in ev["tiers"]]
    voices, people = "unseen_speakers" in tiers, {"people_images", "clean"} <= set(tiers)
    sizes = ", ".join(f"{t} {n}" for t, n in ev["tiers"].items())
    head = [f"{t} %" for t in tiers]
    head += ["unseen voices, audio only %"] * voices + ["people images, image only %", "vs clean"] * people
    lines = [
        "## Tiers (all of the model's modalities present; 95% bootstrap intervals)",
        "",
        f"Samples: {sizes}. Intervals: {ev.get('n_boot', N_BOOT)} seeded bootstrap resamples.",
        "",
        "| model | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(head),
    ]
    for name, m in ev["models"].items():
        cells = [ci(_tier(m, t).get("accuracy")) for t in tiers]
        if voices:
            cells.append(ci(_tier(m, "unseen_speakers").get("audio_only")))
        if people:
            drawn, clean = _tier(m, "people_images").get("image_only"), _tier(m, "clean").get("image_only")
            ratio = drawn["value"] / clean["value"] if drawn and clean and clean["value"] else None
            cells += [ci(drawn), f"{100 * ratio:.0f}%" if ratio is not None else ""]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def calibration_section(ev: Ev, plot: str | None) -> list[str]:
    """ECE per model and per branch of the branched fusions."""
    lines = [
        "## Calibration",
        "",
        f"Expected calibration error over {ECE_BINS} equal-width confidence bins (top-class probability of "
        "the served logits). A branch is the model with a one-hot mask (that modality alone).",
        "",
        "| model | ECE benchmark % | ECE clean % | mean confidence % | accuracy % |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in ev["models"].items():
        rows = [(f"`{name}`", _tier(m, "benchmark").get("calibration"), _tier(m, "clean").get("calibration"))]
        if m["fusion"] in BRANCHED:
            for branch, cal in _tier(m, "benchmark").get("branches", {}).items():
                rows.append((f"`{name}` {branch} branch", cal, None))
        for label, bench, clean in rows:
            if not bench:
                continue
            c = f"{100 * clean['ece']:.1f}" if clean else ""
            lines.append(
                f"| {label} | {100 * bench['ece']:.1f} | {c} | {100 * bench['confidence']:.1f} | "
                f"{100 * bench['accuracy']:.1f} |"
            )
    return [*lines, "", f"![{plot}]({plot})"] if plot else lines


def conflict_section(ev: Ev) -> list[str]:
    """Whom the answer follows when one modality is swapped, and the agreement flag rates."""
    rows = [(n, c) for n, m in _fusions(ev).items() if (c := _tier(m, "clean").get("conflict"))]
    if not rows:
        return []
    lines = [
        "## Modality conflicts (clean tier)",
        "",
        "One modality replaced by a sample of another class, the other two agreeing on the true class. "
        '"Agreement flag" = the server\'s `agreement.agree: false` (docs/api.md): some present modality, '
        f'alone, gives the fused label less than {RULES_OUT_BELOW:.0%}. "Names another label" = the '
        "modalities' single-modality labels are not all the same (the flag's earlier definition, which "
        "also fires on hard but consistent samples).",
        "",
        "| model | swapped | follows the agreeing two % | follows the swapped one % | agreement flag % "
        "| names another label % |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, c in rows:
        for m, s in c["swapped"].items():
            keys = ("follow_agreeing", "follow_swapped", "flagged", "names_another")
            lines.append(f"| `{name}` | {m} | " + " | ".join(ci(s.get(k)) for k in keys) + " |")
        clean = (ci(c.get("clean_flagged")), ci(c.get("clean_names_another")))
        lines.append(f"| `{name}` | none (clean, agreeing) | | | {clean[0]} | {clean[1]} |")
    return lines


def margins_section(ev: Ev) -> list[str]:
    """One- and two-missing subsets against the matching unimodal baseline, paired."""
    rows = [(n, s, d) for n, m in _fusions(ev).items() for s, d in m.get("margins", {}).items()]
    if not rows:
        return []
    lines = [
        "## Missing modalities vs the unimodal baselines (paired bootstrap, benchmark tier)",
        "",
        "Fusion minus the matching baseline (one modality: its own baseline; two: the better of the two) "
        "on the same samples. **Significant loss** = the whole 95% interval below -1 point.",
        "",
        "| model | modalities present | fusion % | baseline | difference, points | verdict |",
        "|---|---|---:|---|---:|---|",
    ]
    for name, subset, d in rows:
        fused = ev["models"][name]["tiers"]["benchmark"]["subsets"].get(subset)
        lo, hi = d["ci"]
        verdict = (
            "**significant loss**" if d["significant_loss"] else ("loss?" if d["value"] < -0.01 else "ok")
        )
        lines.append(
            f"| `{name}` | {subset} | {ci(fused)} | `{d['baseline']}` | "
            f"{100 * d['value']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {verdict} |"
        )
    losers = dict.fromkeys(n for n, _, d in rows if d["significant_loss"])
    if losers:
        lines.append("")
    for name in losers:
        why = MISSING_LOSS_WHY.get(str(ev["models"][name]["fusion"]), "no reason is known.")
        lines.append(f"- **Why `{name}` loses significantly:** {why}")
    return lines


def seeds_section(
    seeds: Mapping[str, Any] | None, trained_on: Mapping[str, list[str]] | None = None
) -> list[str]:
    """Mean +- standard deviation of the headline numbers over training seeds.

    ``trained_on`` (data fingerprint -> models, when the repository mixes builds): a model whose
    own version was trained on another build than the extra seeds is named, as is that build."""
    if not seeds or not seeds.get("models"):
        return []
    built = seeds.get("fingerprint", "")
    other = {
        name: fp
        for fp, names in (trained_on or {}).items()
        for name in names
        if name in seeds["models"] and built and fp != built
    }
    data = "same data" if not other else "see below for the data"
    lines = [
        f"## Seeds (training seeds {', '.join(str(s) for s in seeds['seeds'])}, {data})",
        "",
        f"Command: `{seeds.get('command', 'python -m training seeds')}`. Mean ± standard deviation; "
        "then each seed's own value."
        + "".join(
            f" The first seed of `{name}` is the served model, trained on build `{fp[:16]}`; its other"
            f" seeds on `{built[:16]}`."
            for name, fp in other.items()
        ),
        "",
        "| model | metric | mean ± sd % | per seed % |",
        "|---|---|---:|---|",
    ]
    for name, metrics in seeds["models"].items():
        for metric, s in metrics.items():
            per = ", ".join(f"{100 * v:.1f}" for v in s["values"])
            lines.append(f"| `{name}` | {metric} | {100 * s['mean']:.1f} ± {100 * s['sd']:.1f} | {per} |")
    return lines


def _solid_bins(rel: Mapping[str, list[float]]) -> tuple[list[float], list[float]]:
    """The bins with enough samples to plot: a 3-sample bin at 0% is noise, not miscalibration."""
    counts = rel.get("count", [MIN_BIN] * len(rel["confidence"]))  # older report.json: no counts
    keep = [i for i, n in enumerate(counts) if n >= MIN_BIN]
    return [rel["confidence"][i] for i in keep], [rel["accuracy"][i] for i in keep]


def plot_reliability(ev: Ev, out: Path) -> str | None:
    """One reliability panel per model (benchmark tier); late/gated also draw their branches."""
    models = [(n, m) for n, m in ev["models"].items() if _tier(m, "benchmark").get("calibration")]
    if not models:
        return None
    cols = min(4, len(models))
    rows = (len(models) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False)
    colors: dict[str, Any] = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(MODALITIES)}
    for ax, (name, m) in zip(axes.flat, models, strict=False):
        cal = m["tiers"]["benchmark"]["calibration"]
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        curves: list[tuple[str, Any, str, Any]] = [("fused", cal, "-o", "black")]
        if m["fusion"] in BRANCHED:
            branches = _tier(m, "benchmark").get("branches", {})
            curves += [(b, c, "--.", colors.get(b, "grey")) for b, c in branches.items()]
        for label, c, style, color in curves:
            xs, ys = _solid_bins(c["reliability"])
            ax.plot(xs, ys, style, ms=3, color=color, label=f"{label} ECE {100 * c['ece']:.1f}%")
        ax.set_title(name, fontsize=10)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes.flat[len(models) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes[-1, :]:
        ax.set_xlabel("confidence")
    fig.suptitle(
        f"Reliability on the benchmark tier (on the diagonal = calibrated; bins with >= {MIN_BIN} samples)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)
    return "reliability.png"
