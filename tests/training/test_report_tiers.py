"""The report's tier, calibration, conflict, margin and seed sections, and the advice drawn from them.

The evaluation comes from the oracle models of ``test_evaluate_tiers`` (answers known in closed
form), so each assertion checks that a measured fact reaches the report, not a fixed string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.training.test_evaluate_tiers import ALL, dataset, write_oracle
from training import seeds as seeds_module
from training import tiers_report, verdicts
from training.cli import app
from training.report import write_report
from training.tiers_eval import evaluate_repository


@pytest.fixture(scope="module")
def ev(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("oracles")
    dirs = [
        write_oracle(root, "late", "late", ALL),
        write_oracle(root, "gated", "gated", ALL, audio=3.0),
        write_oracle(root, "image_only", "unimodal", ["image"]),
        write_oracle(root, "audio_only", "unimodal", ["audio"]),
        write_oracle(root, "text_only", "unimodal", ["text"]),
    ]
    labels = np.arange(300) % 10
    rows = np.arange(300)
    tiers = {
        # half the images and the other half of the texts lie: every row still has a 2-1 majority
        "benchmark": dataset(labels, wrong={"image": rows[:150], "text": rows[150:]}),
        "clean": dataset(labels),
        "unseen_speakers": dataset(labels, wrong={"audio": rows[:30]}),
        "people_images": dataset(labels, wrong={"image": rows[:60]}),
    }
    return evaluate_repository(dirs, tiers, n_boot=200)


def test_tiers_section_shows_intervals_and_the_image_ratio(ev: dict[str, Any]) -> None:
    text = "\n".join(tiers_report.tiers_section(ev))
    assert "| `late` | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in text
    assert "| 90.0 [" in text  # unseen voices, audio only: 270 / 300
    assert "| 80% |" in text  # people images 240 / 300 vs clean 300 / 300


def test_calibration_section_lists_branches_of_late_and_gated(ev: dict[str, Any]) -> None:
    lines = tiers_report.calibration_section(ev, "reliability.png")
    branch_rows = [line for line in lines if "branch |" in line]
    assert len(branch_rows) == 6 and lines[-1] == "![reliability.png](reliability.png)"
    ece = ev["models"]["late"]["tiers"]["clean"]["calibration"]["ece"]
    assert f"| {100 * ece:.1f} |" in next(line for line in lines if line.startswith("| `late` |"))


def test_conflict_and_margin_sections_carry_the_measured_rates(ev: dict[str, Any]) -> None:
    conflict = "\n".join(tiers_report.conflict_section(ev))
    assert "| `gated` | audio | 0.0 [0.0, 0.0] | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in conflict
    assert "| `late` | none (clean, agreeing) | | | 0.0 [0.0, 0.0] |" in conflict
    margins = "\n".join(tiers_report.margins_section(ev))
    # image alone: wrong on half the rows for the fusion's branch and the baseline alike
    assert "| `late` | image | 50.0 [" in margins and "| `image_only` | +0.0 [+0.0, +0.0] | ok |" in margins


def test_targets_are_judged_from_the_numbers(ev: dict[str, Any]) -> None:
    rows = {target: (ok, detail) for target, ok, detail in verdicts.targets(ev)}
    assert rows["late: one modality swapped, follows the agreeing two >= 95%"][0]
    ok, detail = rows["gated: one modality swapped, follows the agreeing two >= 95%"]
    assert not ok and "worst 0.0%" in detail
    ok, detail = rows["unseen voices, audio alone >= 85%"]
    assert ok and "90.0%" in detail
    assert not rows["people's images (inverted, off-centre) >= 95% of the clean image accuracy"][0]
    assert rows["agreement flag: >= 95% of swapped cases, <= 5% of clean agreeing ones"][0]
    ok, detail = rows["noisy benchmark: best fusion >= 92% and >= best unimodal + 15 points"]
    assert (
        not ok and detail == "`late` 100.0 [100.0, 100.0] vs `audio_only`: +0.0 [+0.0, +0.0] points (paired)"
    )
    assert not rows["ECE <= 3% for every served model (benchmark tier)"][0]  # one-hot votes: under-confident


def test_advice_names_the_steady_and_the_swayed_fusion(ev: dict[str, Any]) -> None:
    advice = "\n".join(verdicts.choose(ev))
    assert "`late` follows the agreeing two most often (100.0%)" in advice
    assert "`gated` is swayed by the odd one out most often (33.3%)" in advice
    assert "**A voice it never heard (audio alone):** `late` (90.0%)" in advice
    assert "**Digits drawn as people draw them (image alone):** `late` (80.0%)" in advice
    # both miss calibration (one-hot votes are under-confident); gated also follows the audio bully
    assert "**Default recommendation:** `late` (100.0% on the benchmark)" in advice
    assert "misses the fewest (2 of 3: it is over- or under-confident and loses to a baseline" in advice


def test_write_report_adds_the_sections_and_the_reliability_plot(ev: dict[str, Any], tmp_path: Path) -> None:
    seeds = {
        "seeds": [0, 1],
        "models": seeds_module.summarise({0: {"late": {"x": 0.9}}, 1: {"late": {"x": 0.8}}}, ["late"]),
    }
    report = write_report([], tmp_path, {"evaluation": ev, "seeds": seeds}).read_text()
    for heading in (
        "## Tiers",
        "## Calibration",
        "## Modality conflicts",
        "## Missing modalities",
        "## Seeds",
    ):
        assert heading in report
    assert "| `late` | x | 85.0 ± 7.1 | 90.0, 80.0 |" in report
    assert (tmp_path / "reliability.png").stat().st_size > 10_000


def test_summarise_keeps_metrics_every_seed_measured() -> None:
    out = seeds_module.summarise({0: {"m": {"a": 0.5, "b": 1.0}}, 2: {"m": {"a": 0.7}}}, ["m"])
    assert out == {"m": {"a": {"values": [0.5, 0.7], "mean": 0.6, "sd": pytest.approx(0.1414, abs=1e-4)}}}


def test_seeds_command_needs_a_tier_evaluated_repository(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["seeds", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "report.json is missing" in result.output
    (tmp_path / "report.json").write_text(json.dumps({"seed": 0}))
    result = runner.invoke(app, ["seeds", "--out", str(tmp_path), "--models", "late"])
    assert result.exit_code == 1 and "no tier evaluation of ['late']" in result.output


def test_reliability_plot_leaves_out_bins_too_small_to_mean_anything() -> None:
    rel = {"confidence": [0.2, 0.5, 0.9], "accuracy": [0.0, 0.5, 0.9], "count": [3, 40, 500]}
    assert tiers_report._solid_bins(rel) == ([0.5, 0.9], [0.5, 0.9])


def test_a_benchmark_only_evaluation_reports_what_it_has(tmp_path: Path) -> None:
    """A user data set has no tiers: no conflict table, no tier targets, still margins and advice."""
    dirs = [
        write_oracle(tmp_path, "late", "late", ALL),
        write_oracle(tmp_path, "text_only", "unimodal", ["text"]),
    ]
    ev = evaluate_repository(dirs, {"benchmark": dataset(np.arange(50) % 10)}, n_boot=50)
    report = write_report([], tmp_path, {"evaluation": ev}).read_text()
    assert "| model | benchmark % |\n" in report and "## Modality conflicts" not in report
    assert "| `late` | text | 100.0 [100.0, 100.0] | `text_only` | +0.0 [+0.0, +0.0] | ok |" in report
    assert (
        "unseen voices, audio alone" not in report
        and "**Best on noisy inputs (benchmark):** `late`" in report
    )


def test_recommendation_prefers_fewest_missed_targets_and_says_what_is_more_accurate() -> None:
    fusions = {"a": {"tiers": {"benchmark": {"accuracy": {"value": 0.9, "n": 9}}}}}
    fusions["b"] = {"tiers": {"benchmark": {"accuracy": {"value": 0.8, "n": 9}}}}
    text = verdicts._recommend(fusions, {}, {"a": 0.1, "b": 0.01}, {"a": ["x"]})
    assert text.startswith("`b`: the most accurate on the benchmark (80.0%)")
    text = verdicts._recommend(fusions, {}, {"a": 0.1, "b": 0.1}, {"a": ["x"]})
    assert (
        text.startswith("`b` (80.0% on the benchmark)") and "1 of 3: it is over- or under-confident)" in text
    )
    assert text.endswith(
        "`a` is more accurate (90.0%) but is over- or under-confident and loses to a "
        "baseline with modalities missing."
    )


def test_seeds_section_names_a_served_model_trained_on_another_build() -> None:
    seeds = {
        "seeds": [0, 1, 2],
        "fingerprint": "b" * 64,
        "models": {
            m: {"benchmark_accuracy": {"mean": 0.8, "sd": 0.01, "values": [0.8] * 3}}
            for m in ("late", "gated")
        },
    }
    mixed = tiers_report.seeds_section(seeds, {"a" * 64: ["late", "early"], "b" * 64: ["gated"]})
    assert "see below for the data" in mixed[0]
    assert f"The first seed of `late` is the served model, trained on build `{'a' * 16}`" in mixed[2]
    assert "`gated`" not in mixed[2]  # its served model and its seeds share one build
    assert "same data" in tiers_report.seeds_section(seeds)[0]


def _loss_ev(kind: str) -> dict[str, Any]:
    """A fusion of ``kind`` that loses significantly with only text present."""
    stat = {"value": 0.6, "ci": [0.58, 0.62], "n": 2000}
    loss = {"baseline": "text_only", "value": -0.05, "ci": [-0.07, -0.03], "significant_loss": True}
    model = {
        "fusion": kind,
        "modalities": ALL,
        "tiers": {"benchmark": {"accuracy": stat, "subsets": {"text": stat}}},
        "margins": {"text": loss},
    }
    return {"models": {"mine": model}}


@pytest.mark.parametrize(("kind", "met"), [("early", True), ("late", False)])
def test_a_significant_missing_modality_loss_counts_only_when_the_report_says_why(
    kind: str, met: bool
) -> None:
    """Issue 10: a fusion below its baseline with modalities missing is acceptable only when the
    report marks the loss significant and says why (early fusion's design); any other is a miss."""
    ev = _loss_ev(kind)
    section = "\n".join(tiers_report.margins_section(ev))
    assert "| `mine` | text |" in section and "**significant loss**" in section
    why = "- **Why `mine` loses significantly:** " + (
        tiers_report.MISSING_LOSS_WHY["early"] if met else "no reason is known."
    )
    assert why in section
    row = next(t for t in verdicts.targets(ev) if t[0].startswith("one or two modalities missing"))
    assert row[1] is met
    assert row[2].startswith(
        "significant losses (each explained" if met else "significant losses (unexplained: `mine`)"
    )
