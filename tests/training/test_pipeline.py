"""A tiny end-to-end run: built-in data subset -> train -> export -> evaluate -> report, and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from app.manifest import Manifest
from training import tiers_eval
from training.cli import app, fresh_run_dir
from training.data import load_dataset
from training.pipeline import latest_models, report, resolve_models, run
from training.tiers_eval import evaluate_tiers

LIMIT = 200


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    run(["late", "gated", "text_only"], limit=LIMIT, epochs=2, out=out, progress=False, command="test")
    return out


def test_run_exports_evaluated_models_and_a_report(trained: Path) -> None:
    dirs = latest_models(trained)
    assert [d.parent.name for d in dirs] == ["gated", "late", "text_only"]
    for d in dirs:
        manifest = Manifest.read(d / "manifest.json")
        m = manifest.metrics
        assert 0.0 <= m["test_accuracy"] <= 1.0
        assert m["parity_max_abs_diff"] <= 1e-4
        assert m["latency_ms"]["batch_1"] > 0 and m["params"] > 0
        assert manifest.training["limit"] == LIMIT and manifest.training["epochs"] == 2
        assert len(manifest.training["history"]) == 2
        expected_subsets = 1 if manifest.fusion == "unimodal" else 7
        assert len(m["subset_accuracy"]) == expected_subsets
        for curve in m["robustness"].values():
            assert len(curve) == 6
        calibration = manifest.training["calibration"]
        assert set(m["calibration"]) == {"val_ece_before", "val_ece_after", "test_ece"}
        assert m["calibration"]["val_ece_after"] == calibration["val_ece_after"]
        expected_temps = 1 if manifest.fusion == "unimodal" else 7
        temps = calibration["temperature"]
        assert (len(temps) if isinstance(temps, dict) else 1) == expected_temps
    report = (trained / "REPORT.md").read_text()
    for name in ("`late`", "`gated`", "`text_only`", "## Targets", "## Which fusion to choose"):
        assert name in report
    assert (trained / "robustness.png").stat().st_size > 1000


def test_a_partial_retrain_keeps_the_rewrite_note_and_names_each_models_data(
    trained: Path, tmp_path: Path
) -> None:
    """Retraining one model into a repository whose other models came from another run (and
    were rewritten by ``optimize``): the report says both, instead of one run's facts for all."""
    out = tmp_path / "models"
    shutil.copytree(trained, out)
    saved = json.loads((out / "report.json").read_text())
    (out / "report.json").write_text(json.dumps({**saved, "optimized": "python -m training optimize"}))
    path = out / "gated" / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "data_fingerprint": "f" * 64}))
    report(out, {**saved, "models": ["gated"], "wall_seconds": 1.0})  # as a run that trained gated
    header = (out / "REPORT.md").read_text().split("\n")[2]
    assert "rewritten by `python -m training optimize`" in header
    assert "Not one training run" in header and f"`{'f' * 16}`: `gated`" in header
    assert f"`{saved['fingerprint'][:16]}`: `late`, `text_only`" in header
    assert json.loads((out / "report.json").read_text())["optimized"] == "python -m training optimize"
    assert "no one run trained them all" in (out / "REPORT.md").read_text()


def test_report_accuracy_matches_an_independent_onnx_run(trained: Path) -> None:
    """The number in the manifest is what onnxruntime gives on the test split."""
    test = load_dataset("default", limit=LIMIT, progress=False).split_view("test")
    d = trained / "late" / "1"
    session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "image": test.image,
        "audio": test.audio,
        "text": test.text,
        "mask": test.mask.astype(np.float32),
    }
    pred = session.run(["logits"], feeds)[0].argmax(1)
    accuracy = Manifest.read(d / "manifest.json").metrics["test_accuracy"]
    assert accuracy == pytest.approx(float((pred == test.label).mean()), abs=1e-4)


def test_parallel_jobs_give_the_same_model_files(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--jobs 2`` (make train) trains each model in its own spawned process: the files are the
    ones a one-process run writes, byte for byte. Run through the CLI, as ``make train`` does, so
    the worker gets the CLI's spec options too."""
    args = ["train", "--fusion", "text_only,late", "--limit", str(LIMIT), "--epochs", "2"]
    args += ["--out", str(tmp_path), "--version", "1", "--jobs", "2", "--no-progress"]
    evaluated_here: list[Path] = []  # in the run's process; the workers are spawned, unpatched
    real = tiers_eval.evaluate_model_tiers
    monkeypatch.setattr(
        tiers_eval, "evaluate_model_tiers", lambda d, *a, **k: evaluated_here.append(d) or real(d, *a, **k)
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert evaluated_here == []  # every model's tier numbers came back from its worker
    monkeypatch.undo()
    for name in ("text_only", "late"):
        assert (tmp_path / name / "1" / "model.onnx").read_bytes() == (
            trained / name / "1" / "model.onnx"
        ).read_bytes()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["jobs"] == 2
    # each worker evaluated its model on the tiers and handed the numbers back: the same ones
    test = load_dataset("default", limit=LIMIT, progress=False).split_view("test")
    again = evaluate_tiers(latest_models(tmp_path), "default", test, limit=LIMIT, progress=False)
    assert saved["evaluation"] == json.loads(json.dumps(again))


def test_resolve_models() -> None:
    assert resolve_models("baselines") == ["image_only", "audio_only", "text_only"]
    assert resolve_models("late, early") == ["late", "early"]
    with pytest.raises(ValueError, match="unknown model"):
        resolve_models("late,transformer")


def test_cli_train_and_report(tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "train",
        "--fusion",
        "image_only",
        "--limit",
        str(LIMIT),
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "exported 1 model(s)" in result.output
    assert (tmp_path / "image_only" / "1" / "model.onnx").exists()
    again = runner.invoke(app, args)  # no --version: the next free one
    assert again.exit_code == 0 and (tmp_path / "image_only" / "2" / "manifest.json").exists()
    (tmp_path / "REPORT.md").unlink()
    trained_by = json.loads((tmp_path / "report.json").read_text())["command"]
    assert runner.invoke(app, ["report", "--out", str(tmp_path)]).exit_code == 0
    rebuilt = (tmp_path / "REPORT.md").read_text()
    assert "`image_only`" in rebuilt
    assert f"Command: `{trained_by}`" in rebuilt  # a rebuilt report still names the training command


def test_cli_rejects_unknown_model_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--fusion", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown model" in result.output


def test_train_on_a_user_manifest(tmp_path: Path) -> None:
    """The 'your own data' path end to end: files + manifest.jsonl -> trained, exported model."""
    from training.data import export

    manifest = export(load_dataset("default", limit=LIMIT, progress=False), tmp_path / "data", progress=False)
    out = tmp_path / "models"
    run(["text_only"], source=str(manifest), epochs=1, out=out, progress=False)
    card = Manifest.read(out / "text_only" / "1" / "manifest.json")
    assert card.labels == [str(i) for i in range(10)]
    assert card.training["data"] == str(manifest)
    assert 0.0 <= card.metrics["test_accuracy"] <= 1.0


def test_cli_train_defaults_to_a_fresh_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --out, training never writes into the committed models/ but into runs/<UTC time>/."""
    monkeypatch.chdir(tmp_path)
    args = ["train", "--fusion", "text_only", "--limit", str(LIMIT), "--epochs", "1", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "text_only" / "1" / "model.onnx").exists()
    assert not (tmp_path / "models").exists()
    assert fresh_run_dir(tmp_path / "runs") != runs[0]  # a second run gets its own folder


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent has not reaped it


def test_workers_exit_when_the_run_is_killed() -> None:
    """``kill`` reaches only the run's own process: its ``--jobs`` workers must not go on training."""
    script = (
        "import os, time\n"
        "from training.pipeline import spawn_pool\n"
        "pool = spawn_pool(1)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "pool.submit(time.sleep, 120)\n"
        "time.sleep(120)\n"
    )
    run_proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert run_proc.stdout is not None
    worker = int(run_proc.stdout.readline())
    assert _alive(worker)
    run_proc.kill()
    run_proc.wait()
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker)


def test_latency_is_measured_after_training_with_the_models_taking_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's own latency ran beside the other worker's training; the run measures again once
    every model is trained (``measure_latencies``), and that is what the manifests and report keep."""
    import training.pipeline as pipeline

    seen: list[list[Path]] = []
    measured: dict[Path, dict[str, float]] = {}
    real = pipeline.measure_latencies

    def recording(dirs: list[Path]) -> dict[Path, dict[str, float]]:
        assert all("test_accuracy" in Manifest.read(d / "manifest.json").metrics for d in dirs)  # evaluated
        seen.append(list(dirs))
        measured.update(real(dirs, rounds=2, repeats=3))
        return measured

    monkeypatch.setattr(pipeline, "measure_latencies", recording)
    dirs = run(["text_only", "image_only"], limit=LIMIT, epochs=1, out=tmp_path, progress=False)
    assert seen == [dirs]
    report = (tmp_path / "REPORT.md").read_text()
    for d in dirs:
        latency = Manifest.read(d / "manifest.json").metrics["latency_ms"]
        assert latency == measured[d] and latency["batch_64"] > latency["batch_1"] > 0
        assert f"| {latency['batch_1']:.2f} | {latency['batch_64']:.2f} |" in report
