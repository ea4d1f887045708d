"""``python -m training seeds`` end to end on a tiny built-in subset: train, then extra seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training import seeds  # noqa: F401  (registers the command)
from training.cli import app
from training.pipeline import run
from training.seeds import train_seeds

LIMIT = 200


@pytest.mark.slow
def test_seeds_adds_mean_and_spread_to_the_report(tmp_path: Path) -> None:
    run(["late"], limit=LIMIT, epochs=1, out=tmp_path, progress=False, command="test")
    base = json.loads((tmp_path / "report.json").read_text())["evaluation"]["models"]["late"]["headline"]
    args = ["seeds", "--models", "late", "--seeds", "1", "--limit", str(LIMIT), "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "report.json").read_text())["seeds"]
    assert saved["seeds"] == [0, 1]
    stats = saved["models"]["late"]["benchmark_accuracy"]
    assert stats["values"][0] == base["benchmark_accuracy"]  # seed 0 is the trained model's own number
    assert stats["mean"] == pytest.approx(sum(stats["values"]) / 2, abs=1e-4)
    assert "## Seeds (training seeds 0, 1, same data)" in (tmp_path / "REPORT.md").read_text()
    assert not list(tmp_path.glob("seed*"))  # the extra seeds' models never enter the repository


@pytest.mark.slow
def test_parallel_seeds_match_the_one_process_run() -> None:
    """``seeds --jobs 2`` (make seeds) trains each (seed, model) in its own spawned process: the
    numbers are the ones a one-process run gives."""
    args = {"limit": LIMIT, "epochs": 1, "progress": False}
    alone = train_seeds(["late", "text_only"], [1, 2], **args)
    assert train_seeds(["late", "text_only"], [1, 2], jobs=2, **args) == alone
    assert set(alone) == {1, 2} and set(alone[1]) == {"late", "text_only"}
