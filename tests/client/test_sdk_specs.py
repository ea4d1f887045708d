"""The SDK's view of input specs: a card's ``spec`` and an answer's ``adjusted`` (docs/specs.md)."""

from __future__ import annotations

from fusion_client import InputSpec, ModelInfo, Prediction
from fusion_client.cli import format_prediction
from tests.client.sdk_fakes import answer

CUT = {
    "audio": {
        "actions": ["resampled", "cut"],
        "from": {"seconds": 3.2, "sample_rate": 44100, "channels": 1},
        "to": {"seconds": 1.0, "sample_rate": 16000, "channels": 1},
        "message": "audio resampled from 44100 Hz to 16000 Hz; cut from 3.20 s to 1.00 s",
    }
}


def test_adjusted_is_parsed_and_shown() -> None:
    got = Prediction.from_json(answer(adjusted=CUT))
    assert got.adjusted is not None
    audio = got.adjusted["audio"]
    assert audio.actions == ["resampled", "cut"] and audio.original["seconds"] == 3.2
    assert audio.served == {"seconds": 1.0, "sample_rate": 16000, "channels": 1}
    assert "adjusted: audio resampled from 44100 Hz" in format_prediction(got)


def test_an_answer_without_adjusted_or_with_null_has_none() -> None:
    assert Prediction.from_json(answer()).adjusted is None  # an older server
    assert Prediction.from_json(answer(adjusted=None)).adjusted is None
    assert "adjusted" not in format_prediction(Prediction.from_json(answer()))


def test_model_card_spec() -> None:
    card = {
        "name": "shapes",
        "version": 1,
        "modalities": {"image": {"formats": ["png"]}},
        "labels": ["a", "b"],
        "spec": {
            "image_size": 48,
            "image_channels": 3,
            "image_normalize": False,
            "sample_rate": 16000,
            "audio_samples": 24000,
            "audio_seconds": 1.5,
            "text_bytes": 128,
            "summary": "48x48 RGB, 1.5 s at 16000 Hz, 128 bytes",
        },
    }
    info = ModelInfo.from_json(card)
    assert info.spec == InputSpec(48, 3, 16000, 1.5, 128, "48x48 RGB, 1.5 s at 16000 Hz, 128 bytes")
    assert ModelInfo.from_json({**card, "spec": None}).spec is None  # a card that could not be read
