"""Settings: the FUSION_ environment, validation at start, provider resolution, the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import main
from app.config import Settings, load_settings
from app.errors import ConfigError
from app.runtime import CPU, resolve_providers

ROOT = Path(__file__).resolve().parents[2]


def test_defaults(models_dir: Path) -> None:
    s = Settings(models_dir=models_dir)
    assert (s.host, s.port, s.providers, s.log_level) == ("127.0.0.1", 8000, "auto", "info")
    assert s.api_key is None
    assert s.max_batch_delay_s == 0.0


def test_every_field_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"


def test_reads_the_fusion_environment(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setenv("FUSION_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FUSION_PORT", "9123")
    monkeypatch.setenv("FUSION_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("FUSION_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("FUSION_API_KEY", "s3cret")
    monkeypatch.setenv("FUSION_MAX_BATCH_DELAY_MS", "2.5")
    s = load_settings()
    assert (s.port, s.log_level, s.providers) == (9123, "debug", "CPUExecutionProvider")
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.max_batch_delay_s == pytest.approx(0.0025)


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("FUSION_PORT", "eighty", "FUSION_PORT"),
        ("FUSION_PORT", "70000", "FUSION_PORT"),
        ("FUSION_MODELS_DIR", "/no/such/dir", "model repository"),
        ("FUSION_PROVIDERS", "gpu", "auto, cpu, cuda"),
        ("FUSION_LOG_LEVEL", "loud", "FUSION_LOG_LEVEL"),
        ("FUSION_MAX_BATCH_SIZE", "0", "FUSION_MAX_BATCH_SIZE"),
        ("FUSION_MAX_BODY_BYTES", "10", "FUSION_MAX_BODY_BYTES"),
    ],
)
def test_invalid_values_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, models_dir: Path, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv("FUSION_MODELS_DIR", str(models_dir))
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert env in str(info.value) and needle in str(info.value)


def test_provider_resolution() -> None:
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers("auto")[-1] == CPU
    assert resolve_providers("CPUExecutionProvider") == [CPU]


def test_cuda_without_a_gpu_fails_at_start(models_dir: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="FUSION_PROVIDERS=cuda"):
        main.create_app(Settings(models_dir=models_dir, providers="cuda"))


def test_run_exits_with_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUSION_PORT", "not-a-port")
    with pytest.raises(SystemExit) as info:
        main.run()
    assert info.value.code == 2
    assert "FUSION_PORT" in capsys.readouterr().err


def test_python_m_app_fails_fast_on_bad_settings(tmp_path: Path) -> None:
    env = {**os.environ, "FUSION_MODELS_DIR": str(tmp_path / "missing"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "FUSION_MODELS_DIR" in proc.stderr


def test_factory_for_uvicorn(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_MODELS_DIR", str(models_dir))
    app = main.create_app()
    assert app.state.settings.models_dir == models_dir
    assert {"/health/live", "/health/ready", "/metrics", "/v1/models"} <= set(app.openapi()["paths"])


def test_an_empty_api_key_means_no_key(models_dir: Path) -> None:
    assert Settings(models_dir=models_dir, api_key="  ").api_key is None  # type: ignore[arg-type]
