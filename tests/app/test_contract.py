"""The trainer/server contract (:mod:`app.contract`): version folders, input tensors, media limits.

Before it, version folders were parsed three ways (server, report, export), the input shapes
were restated in the exporter, and the trainer decoded images up to 40 MP while the server
refused anything over 4 MP.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from app import contract
from app.config import Settings
from app.contract import (
    INPUT_SPECS,
    latest_version_dir,
    next_version,
    parse_version,
    scan_repository,
    version_dirs,
)
from app.errors import PayloadTooLarge
from app.inputs import Limits, RawInput, decode_samples
from app.manifest import DecodeParams
from app.media import DEFAULT_MAX_BYTES, DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES, DEFAULT_SIZE, MODALITIES
from tests.app import fakes


@pytest.mark.parametrize(
    ("text", "version"),
    [("1", 1), ("12", 12), *[(bad, None) for bad in ("0", "007", "-1", "x", "\u00b2", "")]],
)
def test_parse_version(text: str, version: int | None) -> None:
    assert parse_version(text) == version


def test_version_folders_are_read_one_way(tmp_path: Path) -> None:
    model = tmp_path / "m"
    for name in ("1", "3", "07", "notes", "\u00b2"):
        (model / name).mkdir(parents=True)
    (model / "5").write_text("a file, not a folder")
    (model / "3" / "manifest.json").write_text("{}")
    assert sorted(version_dirs(model)) == [1, 3]
    assert next_version(model) == 4 and next_version(tmp_path / "new") == 1
    assert latest_version_dir(model) == model / "3"
    (model / "1" / "manifest.json").write_text("{}")
    (model / "3" / "manifest.json").unlink()
    assert latest_version_dir(model) == model / "1"  # the highest one that has a manifest
    assert latest_version_dir(tmp_path / "missing") is None


def test_scan_repository_skips_what_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "late" / "2").mkdir(parents=True)
    (tmp_path / "Bad Name" / "1").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "REPORT.md").write_text("# report")
    assert scan_repository(tmp_path) == {"late": {2: tmp_path / "late" / "2"}}
    with pytest.raises(OSError):
        scan_repository(tmp_path / "nowhere")


def test_input_tensors_are_what_the_shared_decoder_makes() -> None:
    assert INPUT_SPECS["image"].shape == [-1, DEFAULT_SIZE, DEFAULT_SIZE]
    assert INPUT_SPECS["audio"].shape == [-1, DEFAULT_SAMPLES]
    assert INPUT_SPECS["text"].shape == [-1, DEFAULT_MAX_BYTES]
    assert INPUT_SPECS["mask"].shape == [-1, len(MODALITIES)]
    assert INPUT_SPECS == fakes.SPECS  # the fake models the server tests use follow it too
    params = DecodeParams()
    assert (params.image_size, params.sample_rate) == (DEFAULT_SIZE, DEFAULT_SAMPLE_RATE)
    assert (params.audio_samples, params.text_bytes) == (DEFAULT_SAMPLES, DEFAULT_MAX_BYTES)


def test_the_server_defaults_are_the_contract_limits(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir)
    assert settings.max_image_pixels == contract.MAX_IMAGE_PIXELS
    assert settings.max_audio_seconds == contract.MAX_AUDIO_SECONDS
    assert settings.max_text_chars == contract.MAX_TEXT_CHARS


def test_trainer_and_server_refuse_the_same_image(tmp_path: Path) -> None:
    """5 MP: the trainer used to take it (40 MP limit) while the server refused it (4 MP)."""
    data_manifest = pytest.importorskip("training.data.manifest")
    buffer = io.BytesIO()
    Image.new("L", (2500, 2000)).save(buffer, format="PNG")
    (tmp_path / "big.png").write_bytes(buffer.getvalue())
    with pytest.raises(data_manifest.DatasetError, match="more than the limit of 4000000"):
        data_manifest._decode({"image": "big.png", "where": "row 1"}, "image", tmp_path)
    limits = Limits(contract.MAX_IMAGE_PIXELS, contract.MAX_AUDIO_SECONDS, contract.MAX_TEXT_CHARS)
    manifest = fakes.make_manifest("m", 1, ["image"])
    with pytest.raises(PayloadTooLarge, match="more than the limit of 4000000"):  # 413
        decode_samples([{"image": RawInput("bytes", buffer.getvalue(), "image")}], manifest, limits)
