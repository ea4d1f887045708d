"""The decode stage's fast paths agree with the general ones, and the hot routes behave like routes."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from app.decode_cost import DecodeCost, probe
from app.inputs import RawInput
from app.media import audio
from app.media.audio import decode_audio, pcm_wav


def wav(x: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("channels", [1, 2, 5])
@pytest.mark.parametrize(("rate", "frames"), [(16_000, 16_000), (22_050, 30_000), (8_000, 3), (44_100, 1)])
def test_pcm_wav_fast_path_gives_libsndfile_samples_bit_for_bit(
    channels: int, rate: int, frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(frames).uniform(-1, 1, (frames, channels)).astype(np.float32)
    x[0] = -1.0
    data = wav(x, rate)
    header = pcm_wav(data)
    assert header is not None and (header.rate, header.channels, header.frames) == (rate, channels, frames)
    fast = decode_audio(data)
    monkeypatch.setattr(audio, "pcm_wav", lambda _: None)  # libsndfile only
    assert np.array_equal(fast, decode_audio(data))


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_U8"])
def test_other_wav_encodings_go_to_libsndfile(subtype: str) -> None:
    data = wav(np.zeros(100, dtype=np.float32), 16_000, subtype)
    assert pcm_wav(data) is None
    assert decode_audio(data).shape == (16_000,)


def test_damaged_wav_is_left_to_libsndfile() -> None:
    data = wav(np.zeros(1000, dtype=np.float32), 16_000)
    assert pcm_wav(data[:-10]) is None  # data chunk longer than the bytes: libsndfile decides
    assert pcm_wav(b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * 40) is None
    assert pcm_wav(b"not a wav file at all, but long enough to look at") is None


def test_over_long_pcm_wav_is_refused_before_decoding() -> None:
    from app.media import MediaTooLarge

    with pytest.raises(MediaTooLarge, match="more than the limit of 1 s"):
        decode_audio(wav(np.zeros(32_000, dtype=np.float32), 16_000), max_seconds=1.0)


@pytest.mark.parametrize(("size", "fmt"), [((28, 28), "PNG"), ((300, 7), "PNG"), ((40, 50), "BMP")])
def test_image_cost_from_headers_matches_pillow(size: tuple[int, int], fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("L", size).save(buf, format=fmt)
    sample = {"image": RawInput("bytes", buf.getvalue(), "image")}
    assert probe([sample])[1] == DecodeCost(pixels=size[0] * size[1])


def test_wav_cost_from_header_counts_every_channel() -> None:
    data = wav(np.zeros((40_000, 2), dtype=np.float32), 16_000)
    cost = probe([{"audio": RawInput("bytes", data, "audio")}])[1]
    assert cost == DecodeCost(samples=80_000) and not cost.inline


@pytest.mark.asyncio(loop_scope="session")
async def test_hot_routes_keep_route_behaviour(client: httpx.AsyncClient) -> None:
    bad_version = await client.post("/v2/models/late/versions/x/infer", json={"inputs": []})
    assert bad_version.status_code == 404 and "request_id" in bad_version.json()
    assert bad_version.headers["x-request-id"] == bad_version.json()["request_id"]
    assert (await client.get("/v1/models/late/predict")).status_code == 405
    assert (await client.post("/v1/models/late/predict/extra", json={})).status_code == 404
    unknown = await client.post("/v1/models/nope/predict", json={"text": "one"})
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "request_id"}
    metrics = (await client.get("/metrics")).text
    assert 'endpoint="/v2/models/{name}/versions/{version}/infer"' in metrics
