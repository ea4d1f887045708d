"""POST /v1/models/{name}/predict: JSON and multipart, subsets, instances, explanations, concurrency."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import threading
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import app.decode_cost as decode_cost
from app.decode_cost import DecodeCost, probe
from app.inputs import RawInput, decode_samples
from tests.app import fakes
from tests.app.conftest import PNG, PNG_B64, WAV, WAV_B64

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAYLOADS: dict[str, Any] = {"image": {"b64": PNG_B64}, "audio": {"b64": WAV_B64}, "text": "sept"}
SUBSETS = [list(c) for n in (1, 2, 3) for c in itertools.combinations(["image", "audio", "text"], n)]


async def predict(client: httpx.AsyncClient, model: str, body: dict[str, Any], status: int = 200) -> Any:
    response = await client.post(f"/v1/models/{model}/predict", json=body)
    assert response.status_code == status, response.text
    return response.json()


def probs(answer: dict[str, Any]) -> dict[str, float]:
    return {p["label"]: p["probability"] for p in answer["probabilities"]}


@pytest.mark.parametrize("subset", SUBSETS, ids=["+".join(s) for s in SUBSETS])
async def test_any_subset_of_modalities(client: httpx.AsyncClient, subset: list[str]) -> None:
    answer = await predict(client, "late", {m: PAYLOADS[m] for m in subset})
    assert answer["model"] == "late" and answer["version"] == 2
    assert answer["modalities_used"] == subset
    assert answer["modalities_missing"] == [m for m in ("image", "audio", "text") if m not in subset]
    assert answer["label"] == answer["probabilities"][0]["label"] == str(answer["label_index"])
    assert len(answer["probabilities"]) == 3
    values = [p["probability"] for p in answer["probabilities"]]
    assert values == sorted(values, reverse=True) and 0 < sum(values) <= 1.0 + 1e-6
    assert answer["contributions"] is None and answer["explain_method"] is None


async def test_a_masked_modality_changes_the_answer(client: httpx.AsyncClient) -> None:
    full = await predict(client, "late", {**PAYLOADS, "options": {"top_k": 10}})
    no_audio = await predict(
        client, "late", {"image": PAYLOADS["image"], "text": "sept", "options": {"top_k": 10}}
    )
    assert probs(full) != probs(no_audio)


async def test_each_model_answers(client: httpx.AsyncClient) -> None:
    for model in ("early", "intermediate", "late", "gated"):
        assert (await predict(client, model, PAYLOADS))["modalities_used"] == ["image", "audio", "text"]
    for model, modality in (("image_only", "image"), ("audio_only", "audio"), ("text_only", "text")):
        answer = await predict(client, model, {modality: PAYLOADS[modality], "options": {"explain": True}})
        assert answer["modalities_missing"] == [] and answer["explain_method"] == "none"
        assert answer["contributions"] is None


async def test_instances_equal_one_by_one(client: httpx.AsyncClient) -> None:
    samples = [{m: PAYLOADS[m] for m in subset} for subset in SUBSETS]
    samples.append({"image": {"b64": base64.b64encode(fakes.png_bytes(3)).decode()}, "text": "drei"})
    options = {"top_k": 10, "explain": True}
    together = (await predict(client, "late", {"instances": samples, "options": options}))["predictions"]
    alone = [await predict(client, "late", {**s, "options": options}) for s in samples]
    assert len(together) == len(alone) == len(samples)
    for a, b in zip(together, alone, strict=True):
        assert (a["label"], a["modalities_used"], a["version"]) == (
            b["label"],
            b["modalities_used"],
            b["version"],
        )
        assert probs(a) == pytest.approx(probs(b), abs=1e-5)
        assert a["contributions"] == pytest.approx(b["contributions"], abs=1e-5)


async def test_leave_one_out_is_the_drop_when_the_modality_is_masked(client: httpx.AsyncClient) -> None:
    everything = {"top_k": 10}
    loo = {**everything, "explain": True, "explain_method": "leave_one_out"}
    full = await predict(client, "late", {**PAYLOADS, "options": loo})
    assert full["explain_method"] == "leave_one_out" and set(full["contributions"]) == {
        "image",
        "audio",
        "text",
    }
    label = full["label"]
    for modality in ("image", "audio", "text"):
        rest = {m: v for m, v in PAYLOADS.items() if m != modality}
        without = await predict(client, "late", {**rest, "options": everything})
        drop = probs(full)[label] - probs(without)[label]
        assert full["contributions"][modality] == pytest.approx(drop, abs=1e-5)
    single = await predict(client, "late", {"text": "sept", "options": loo})
    assert single["contributions"]["text"] == pytest.approx(
        single["probabilities"][0]["probability"] - 0.1, abs=1e-5
    )


async def test_gate_weights_are_renormalised_over_the_present_modalities(client: httpx.AsyncClient) -> None:
    answer = await predict(
        client, "gated", {"image": PAYLOADS["image"], "text": "sept", "options": {"explain": True}}
    )
    assert answer["explain_method"] == "shapley"  # the gate's weights come as extra information
    weights = answer["explanation"]["gate_weights"]
    assert set(weights) == {"image", "text"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(0 < w < 1 for w in weights.values())


async def test_top_k_and_version(client: httpx.AsyncClient) -> None:
    one = await predict(client, "late", {"text": "sept", "options": {"top_k": 1}})
    assert len(one["probabilities"]) == 1
    everything = await predict(client, "late", {"text": "sept", "options": {"top_k": 50}})
    assert len(everything["probabilities"]) == 10
    assert sum(p["probability"] for p in everything["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    v1 = await predict(client, "late", {"text": "sept", "options": {"version": 1, "top_k": 10}})
    assert v1["version"] == 1 and probs(v1) != probs(everything)


async def test_multipart_equals_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/models/late/predict",
        files={"image": ("digit.png", PNG, "image/png"), "audio": ("clip.wav", WAV, "audio/wav")},
        data={"text": "sept", "top_k": "10", "explain": "true", "version": "2"},
    )
    assert response.status_code == 200, response.text
    via_json = await predict(client, "late", {**PAYLOADS, "options": {"top_k": 10, "explain": True}})
    assert probs(response.json()) == pytest.approx(probs(via_json), abs=1e-6)
    assert response.json()["contributions"] == pytest.approx(via_json["contributions"], abs=1e-6)


async def test_multipart_text_may_be_a_file(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/text_only/predict", files={"text": ("t.txt", b"sept")})
    assert response.status_code == 200 and response.json()["modalities_used"] == ["text"]


async def test_arrays_and_other_formats(client: httpx.AsyncClient) -> None:
    from app.media import decode_image

    pixels = decode_image(PNG)
    by_file = await predict(client, "image_only", {"image": PAYLOADS["image"], "options": {"top_k": 10}})
    by_ints = await predict(
        client, "image_only", {"image": {"array": pixels.tolist()}, "options": {"top_k": 10}}
    )
    floats = (pixels / 255.0).tolist()
    by_floats = await predict(client, "image_only", {"image": {"array": floats}, "options": {"top_k": 10}})
    assert probs(by_ints) == pytest.approx(probs(by_file), abs=1e-6)
    assert probs(by_floats) == pytest.approx(probs(by_file), abs=1e-6)
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).round(6).tolist()
    by_array = await predict(
        client, "audio_only", {"audio": {"array": wave, "sample_rate": 16000}, "options": {"top_k": 10}}
    )
    by_wav = await predict(client, "audio_only", {"audio": PAYLOADS["audio"], "options": {"top_k": 10}})
    assert probs(by_array) == pytest.approx(probs(by_wav), abs=1e-4)
    flac = base64.b64encode(fakes.wav_bytes(fmt="FLAC")).decode()
    assert (await predict(client, "audio_only", {"audio": {"b64": flac}}))["modalities_used"] == ["audio"]
    rgb_url = "data:image/png;base64," + base64.b64encode(fakes.png_bytes(mode="RGB", size=100)).decode()
    assert (await predict(client, "image_only", {"image": {"b64": rgb_url}}))["label"]


async def test_concurrent_requests_with_bad_ones_mixed_in(client: httpx.AsyncClient) -> None:
    good = [{m: PAYLOADS[m] for m in SUBSETS[i % len(SUBSETS)]} for i in range(24)]
    for i, body in enumerate(good):
        body["text"] = f"sample {i}"
        body["options"] = {"top_k": 10}
    expected = [await predict(client, "late", body) for body in good]
    bad: list[dict[str, Any]] = [
        {"image": {"b64": "%%%"}},
        {"text": ""},
        {"image": {"b64": PNG_B64[:40]}},
        {},
    ]
    calls = [client.post("/v1/models/late/predict", json=body) for body in [*good, *bad] * 2]
    responses = await asyncio.gather(*calls)
    for i, response in enumerate(responses):
        k = i % (len(good) + len(bad))
        if k < len(good):
            assert response.status_code == 200
            assert probs(response.json()) == pytest.approx(probs(expected[k]), abs=1e-5)
        else:
            assert response.status_code == 400 and set(response.json()) == {"error", "request_id"}


async def test_big_payloads_are_parsed_and_decoded_off_the_event_loop(client: httpx.AsyncClient) -> None:
    from app.decode_cost import INLINE_DECODE_BYTES

    noise = np.random.default_rng(0).integers(0, 256, (500, 500), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    encoded = base64.b64encode(buf.getvalue()).decode()
    assert len(encoded) > INLINE_DECODE_BYTES
    as_file = {"image": {"b64": encoded}, "options": {"top_k": 10}}
    as_array = {"image": {"array": noise.tolist()}, "options": {"top_k": 10}}
    by_file = await predict(client, "image_only", as_file)
    by_array = await predict(client, "image_only", as_array)
    assert probs(by_file) == pytest.approx(probs(by_array), abs=1e-6)


def audio_file(seconds: float, rate: int, fmt: str) -> bytes:
    """Silence: a long clip in a few KB, like the FLAC the review found decoded on the loop."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format=fmt)
    return buf.getvalue()


def big_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (side, side), 0).save(buf, format="PNG")
    return buf.getvalue()


async def test_decode_cost_is_read_from_headers_not_sizes() -> None:
    cheap = {"image": RawInput("b64", PNG_B64, "image"), "audio": RawInput("bytes", WAV, "audio")}
    unwrapped, cost = probe([cheap])
    assert (cost.pixels, cost.samples, cost.inline) == (28 * 28, 16_000, True)
    assert unwrapped[0]["image"] == RawInput("bytes", PNG, "image")  # base64 decoded once, here
    png = big_png(2000)
    assert len(png) < 5_000 and not probe([{"image": RawInput("bytes", png, "image")}])[1].inline
    flac = audio_file(2.0, 384_000, "FLAC")
    assert len(flac) < 50_000 and probe([{"audio": RawInput("bytes", flac, "audio")}])[1].samples == 768_000
    array = RawInput("array", [[0] * 300] * 300, "image")
    assert probe([{"image": array}])[1] == DecodeCost(pixels=90_000)
    garbage = {"image": RawInput("bytes", b"nope", "image"), "audio": RawInput("bytes", b"no", "audio")}
    assert probe([garbage])[1] == DecodeCost()  # decoding refuses them at once


async def test_costly_media_is_decoded_off_the_event_loop_and_cheap_media_on_it(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []

    def recording(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return decode_samples(*args)

    monkeypatch.setattr(decode_cost, "decode_samples", recording)
    loop = threading.get_ident()
    await predict(client, "late", {"image": {"b64": PNG_B64}, "audio": {"b64": WAV_B64}})
    big = base64.b64encode(big_png(2000)).decode()
    await predict(client, "image_only", {"image": {"b64": big}})
    long = base64.b64encode(audio_file(2.0, 384_000, "FLAC")).decode()
    await predict(client, "audio_only", {"audio": {"b64": long}})
    assert threads[0] == loop  # no thread hop for a 28x28 PNG and 1 s of 16 kHz audio
    assert loop not in threads[1:]
