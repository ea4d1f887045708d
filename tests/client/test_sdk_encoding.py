"""Every input kind the SDK accepts becomes the JSON of docs/api.md, and decodes back to the same data."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from sdk_fakes import Recorder, answer, body_of

from fusion_client import _encoding

PNG_PIXELS = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)


def png_bytes(pixels: np.ndarray = PNG_PIXELS) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def sent(call: Callable[..., Any], **inputs: Any) -> dict[str, Any]:
    """The JSON body a predict with these inputs sends."""
    recorder = Recorder(httpx.Response(200, json=answer()))
    call(recorder, "predict", "late", **inputs)
    (request,) = recorder.requests
    assert request.method == "POST" and request.url.path == "/v1/models/late/predict"
    return body_of(request)


def unb64(field: dict[str, Any]) -> bytes:
    assert set(field) == {"b64"}
    return base64.b64decode(field["b64"])


def decoded_png(field: dict[str, Any]) -> np.ndarray:
    data = unb64(field)
    assert data.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "digit.png"
    path.write_bytes(png_bytes())
    return path


def test_image_path_str_and_pathlike_send_the_file_bytes(call: Callable[..., Any], png_file: Path) -> None:
    assert unb64(sent(call, image=str(png_file))["image"]) == png_file.read_bytes()
    assert unb64(sent(call, image=png_file)["image"]) == png_file.read_bytes()


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, io.BytesIO])
def test_image_bytes_and_binary_files_are_sent_unchanged(call: Callable[..., Any], wrap: Any) -> None:
    assert unb64(sent(call, image=wrap(png_bytes()))["image"]) == png_bytes()


def test_pil_image_is_sent_as_lossless_png(call: Callable[..., Any]) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(decoded_png(sent(call, image=Image.fromarray(rgb))["image"]), rgb)


def test_pil_image_in_a_mode_png_lacks_is_converted(call: Callable[..., Any]) -> None:
    cmyk = Image.new("CMYK", (5, 4), (0, 0, 0, 0))
    assert decoded_png(sent(call, image=cmyk)["image"]).shape == (4, 5, 3)


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1), (12, 9, 3), (12, 9, 4)])
def test_uint8_arrays_are_sent_as_png(call: Callable[..., Any], shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    expected = pixels[:, :, 0] if shape[-1:] == (1,) else pixels
    assert np.array_equal(decoded_png(sent(call, image=pixels)["image"]), expected)


def test_uint8_arrays_go_as_json_arrays_without_pillow(
    call: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_encoding, "_has_pillow", lambda: False)
    assert sent(call, image=PNG_PIXELS[:3, :2])["image"] == {"array": PNG_PIXELS[:3, :2].tolist()}


def test_float_arrays_are_sent_as_arrays_for_the_server_to_scale(call: Callable[..., Any]) -> None:
    pixels = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    assert sent(call, image=pixels)["image"] == {"array": pixels.tolist()}


@pytest.mark.parametrize("shape", [(28,), (2, 2, 2), (2, 2, 3, 1)])
def test_image_arrays_of_the_wrong_rank_fail_before_sending(
    call: Callable[..., Any], shape: tuple[int, ...]
) -> None:
    recorder = Recorder(httpx.Response(200, json=answer()))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        call(recorder, "predict", "late", image=np.zeros(shape, dtype=np.uint8))
    assert recorder.requests == []


def test_audio_path_and_bytes_send_the_file_bytes(call: Callable[..., Any], tmp_path: Path) -> None:
    path = tmp_path / "seven.wav"
    sf.write(path, np.zeros(800, dtype=np.float32), 8000)
    assert unb64(sent(call, audio=path)["audio"]) == path.read_bytes()
    assert unb64(sent(call, audio=path.read_bytes())["audio"]) == path.read_bytes()
    with path.open("rb") as f:
        assert unb64(sent(call, audio=f)["audio"]) == path.read_bytes()


@pytest.mark.parametrize("shape", [(16000,), (700, 2)])
def test_audio_arrays_are_sent_as_exact_float_wav(call: Callable[..., Any], shape: tuple[int, ...]) -> None:
    samples = np.random.default_rng(2).uniform(-1, 1, shape)
    wav = unb64(sent(call, audio=(samples, np.int64(22050)))["audio"])
    data, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    assert rate == 22050
    assert np.array_equal(data, samples.astype(np.float32).reshape(shape[0], -1))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8])
def test_integer_audio_is_refused_not_clipped(call: Callable[..., Any], dtype: Any) -> None:
    """int16 PCM sent as float WAV would reach the server as values up to 32767 and be clipped."""
    recorder = Recorder(httpx.Response(200, json=answer()))
    pcm = (np.sin(np.arange(1600) / 5) * 100).astype(dtype)
    with pytest.raises(ValueError, match=r"scale integer PCM first, e\.g\. audio=\(pcm / 32768, rate\)"):
        call(recorder, "predict", "late", audio=(pcm, 16000))
    assert recorder.requests == []
    scaled = unb64(sent(call, audio=(pcm / 32768, 16000))["audio"])  # the documented fix works
    assert np.allclose(sf.read(io.BytesIO(scaled), dtype="float32")[0], pcm / 32768, atol=1e-7)


def test_the_server_decodes_sent_arrays_exactly_like_json_arrays() -> None:
    """The efficient encodings (PNG, float WAV) change nothing the model sees."""
    import app.media as media

    pixels = np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    png = unb64(_encoding.encode_image(pixels))
    assert np.array_equal(media.decode_image(png), media.image_from_array(pixels))
    samples = np.random.default_rng(4).uniform(-1, 1, (30000, 2)).astype(np.float32)
    wav = unb64(_encoding.encode_audio((samples, 44100)))
    assert np.array_equal(media.decode_audio(wav), media.audio_from_array(samples, 44100))


def test_an_audio_array_without_a_rate_says_how_to_pass_one(call: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"\(samples, sample_rate\)"):
        call(Recorder(httpx.Response(200, json=answer())), "predict", "late", audio=np.zeros(10))


@pytest.mark.parametrize("rate", [0, -8000, 16000.0, True])
def test_bad_sample_rates_are_rejected(call: Callable[..., Any], rate: Any) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        call(Recorder(httpx.Response(200, json=answer())), "predict", "late", audio=(np.zeros(10), rate))


def test_text_is_sent_as_is_and_must_be_a_string(call: Callable[..., Any]) -> None:
    assert sent(call, text="sept\u00e9") == {"text": "sept\u00e9"}
    with pytest.raises(TypeError, match="text must be a str"):
        call(Recorder(httpx.Response(200, json=answer())), "predict", "late", text=b"sept")


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ({}, ValueError, "at least one of image=, audio=, text="),
        ({"image": "no/such/file.png"}, FileNotFoundError, "no such file"),
        ({"audio": "."}, FileNotFoundError, "no such file"),
        ({"image": "iVBORw0KGgo" * 100}, FileNotFoundError, "as a file"),
        ({"image": 42}, TypeError, "image must be"),
        ({"audio": [0.0, 0.1]}, TypeError, "audio must be"),
        ({"image": io.StringIO("text")}, TypeError, "binary mode"),
    ],
)
def test_local_mistakes_raise_before_anything_is_sent(
    call: Callable[..., Any], inputs: dict[str, Any], error: type[Exception], match: str
) -> None:
    recorder = Recorder(httpx.Response(200, json=answer()))
    with pytest.raises(error, match=match):
        call(recorder, "predict", "late", **inputs)
    assert recorder.requests == []


def test_options_are_sent_only_when_set(call: Callable[..., Any]) -> None:
    assert "options" not in sent(call, text="x")
    body = sent(call, text="x", top_k=3, explain=True, version=2)
    assert body == {"text": "x", "options": {"top_k": 3, "explain": True, "version": 2}}


def test_predict_many_encodes_each_instance_and_shares_options(
    call: Callable[..., Any], png_file: Path
) -> None:
    recorder = Recorder(httpx.Response(200, json={"predictions": [answer(), answer(label="3")]}))
    instances = [{"image": png_file, "text": "sept"}, {"audio": (np.zeros(100), 8000)}]
    result = call(recorder, "predict_many", "late", instances, top_k=2)
    body = body_of(recorder.requests[0])
    assert [r.label for r in result] == ["7", "3"]
    assert set(body) == {"instances", "options"} and body["options"] == {"top_k": 2}
    assert unb64(body["instances"][0]["image"]) == png_file.read_bytes()
    assert body["instances"][0]["text"] == "sept" and set(body["instances"][1]) == {"audio"}


@pytest.mark.parametrize(
    ("instances", "error", "match"),
    [
        ([], ValueError, "at least one instance"),
        ([{"txt": "typo"}], ValueError, r"unknown instance keys \['txt'\]"),
        (["sept"], TypeError, "mapping"),
        ([{}], ValueError, "at least one of"),
    ],
)
def test_predict_many_rejects_malformed_instances(
    call: Callable[..., Any], instances: list[Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(Recorder(httpx.Response(200, json={"predictions": []})), "predict_many", "late", instances)
