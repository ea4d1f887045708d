"""Input specs in the shared decoder and the manifest: RGB, other sizes and rates, and ``adjusted``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from app.checks import check_manifest
from app.errors import ModelLoadError
from app.manifest import DecodeParams, Manifest
from app.media import Adjusted, audio_from_array, decode_audio, decode_image, encode_text, image_from_array
from tests.media_fixtures import audio_bytes, image_bytes, tone

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_rgb_image_is_fitted_with_colour_and_the_resize_is_recorded() -> None:
    red = Image.new("RGB", (64, 32), (255, 0, 0))
    adjusted: Adjusted = {}
    out = decode_image(image_bytes(red), size=16, channels=3, normalize=False, adjusted=adjusted)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert tuple(out[8, 8]) == (255, 0, 0)  # colour kept
    assert tuple(out[0, 8]) == (0, 0, 0) and tuple(out[15, 8]) == (0, 0, 0)  # 2:1 picture padded, not cut
    assert adjusted["image"]["actions"] == ["resized"]
    assert adjusted["image"]["from"] == {"width": 64, "height": 32, "mode": "RGB"}
    assert adjusted["image"]["to"] == {"width": 16, "height": 16, "mode": "RGB"}


def test_rgb_array_and_grey_input_to_an_rgb_spec() -> None:
    grey = np.full((16, 16), 200, dtype=np.uint8)
    adjusted: Adjusted = {}
    out = image_from_array(grey, size=16, channels=3, normalize=False, adjusted=adjusted)
    assert out.shape == (16, 16, 3) and (out == 200).all()
    assert adjusted == {}  # already the spec's size; grey to RGB loses nothing


def test_colour_to_a_grey_spec_is_recorded_and_a_fitting_payload_is_not() -> None:
    adjusted: Adjusted = {}
    decode_image(image_bytes(Image.new("RGB", (28, 28), (0, 0, 255))), normalize=False, adjusted=adjusted)
    assert adjusted["image"]["actions"] == ["greyscaled"]
    adjusted = {}
    decode_image(image_bytes(Image.new("L", (28, 28), 0)), adjusted=adjusted)
    assert adjusted == {}


def test_long_audio_is_cut_and_resampled_and_says_so() -> None:
    adjusted: Adjusted = {}
    clip = decode_audio(
        audio_bytes(tone(3.2, 44_100), 44_100), sample_rate=8_000, samples=4_000, adjusted=adjusted
    )
    assert clip.shape == (4_000,)
    entry = adjusted["audio"]
    assert entry["actions"] == ["resampled", "cut"]
    assert entry["from"] == {"seconds": 3.2, "sample_rate": 44_100, "channels": 1}
    assert entry["to"] == {"seconds": 0.5, "sample_rate": 8_000, "channels": 1}
    assert "cut from 3.20 s to 0.50 s" in entry["message"]


def test_short_stereo_audio_is_padded_and_mixed_down() -> None:
    adjusted: Adjusted = {}
    stereo = np.stack([tone(0.25, 16_000), tone(0.25, 16_000)], axis=1)
    clip = audio_from_array(stereo, 16_000, samples=16_000, adjusted=adjusted)
    assert clip.shape == (16_000,)
    assert adjusted["audio"]["actions"] == ["mixed_down", "padded"]
    adjusted = {}
    audio_from_array(tone(1.0, 16_000), 16_000, adjusted=adjusted)
    assert adjusted == {}


def test_long_text_is_cut_at_a_character_boundary_and_reported() -> None:
    adjusted: Adjusted = {}
    text = "a" + "é" * 150  # 301 bytes
    out = encode_text(text, max_bytes=128, adjusted=adjusted)
    assert out.shape == (128,) and out[127] == 0  # "a" + 63 whole "é", never half of one
    assert adjusted["text"]["from"] == {"bytes": 301, "characters": 151}
    assert adjusted["text"]["to"] == {"bytes": 127, "characters": 64}
    adjusted = {}
    encode_text("short", max_bytes=128, adjusted=adjusted)
    assert adjusted == {}


def test_old_manifests_read_as_the_digits_spec(tmp_path: Path) -> None:
    for path in sorted(MODELS.glob("*/*/manifest.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["decode"].pop("image_channels", None)  # as written before the field existed
        old = tmp_path / "manifest.json"
        old.write_text(json.dumps(raw), encoding="utf-8")
        for manifest in (Manifest.read(path), Manifest.read(old)):
            assert manifest.decode.image_channels == 1
            assert manifest.decode.summary() == "28x28 grey, 1 s at 16000 Hz, 64 bytes"
            check_manifest(manifest)
    no_decode = json.loads(
        next(iter(sorted(MODELS.glob("late/*/manifest.json")))).read_text(encoding="utf-8")
    )
    del no_decode["decode"]
    assert Manifest.model_validate(no_decode).decode == DecodeParams()


def test_spec_shapes_and_refusals() -> None:
    spec = DecodeParams(
        image_size=32, image_channels=3, image_normalize=False, audio_samples=8000, text_bytes=128
    )
    assert spec.input_spec("image").shape == [-1, 32, 32, 3]
    assert spec.input_spec("audio").shape == [-1, 8000] and spec.audio_seconds == 0.5
    assert spec.input_spec("text").shape == [-1, 128]
    with pytest.raises(ValidationError, match="RGB spec"):
        DecodeParams(image_channels=3)  # normalising re-makes grey digits only
    with pytest.raises(ValidationError):
        DecodeParams(image_channels=2)  # type: ignore[arg-type]


def test_a_manifest_whose_graph_shape_disagrees_with_its_spec_is_refused() -> None:
    manifest = Manifest.read(next(iter(sorted(MODELS.glob("image_only/*/manifest.json")))))
    rgb = manifest.model_copy(update={"decode": DecodeParams(image_channels=3, image_normalize=False)})
    with pytest.raises(ModelLoadError, match="decoding makes"):
        check_manifest(rgb)
    good = rgb.model_copy(update={"inputs": [rgb.decode.input_spec("image")]})
    check_manifest(good)
