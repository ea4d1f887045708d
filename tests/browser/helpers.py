"""What the browser tests do to the page and check against the API, kept out of the test file."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from app.manifest import DecodeParams
from bench.server import ROOT
from tests.app import fakes

FAKE_MIC_WAV = ROOT / "examples" / "seven.wav"
"""What Chromium's fake microphone plays (looped)."""
API_KEY = "playground-test-key"

SEVEN = [(0.25, 0.22), (0.75, 0.22), (0.43, 0.85)]
"""A seven as pad fractions: across the top, then down to the lower left."""


def draw(page: Any, strokes: list[tuple[float, float]] = SEVEN) -> None:
    """Draw one connected stroke with real mouse events through the given points."""
    box = page.locator("#pad").bounding_box()
    point = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in strokes]
    page.mouse.move(*point[0])
    page.mouse.down()
    for xy in point[1:]:
        page.mouse.move(*xy, steps=10)
    page.mouse.up()


def record(page: Any, seconds: float = 2.1) -> None:
    """Record from the (fake) microphone until the page has captured ``seconds`` of audio."""
    page.get_by_role("button", name="Record").click()
    captured = "Number(document.getElementById('audio-state').dataset.seconds || 0)"
    page.wait_for_function(f"{captured} >= {seconds}")
    page.get_by_role("button", name="Stop").click()
    page.locator("#playback").wait_for(state="visible")


def predict_response(page: Any, action: Any) -> Any:
    """Run ``action`` (a click, a toggle) and return the predict response it caused, once shown."""
    with page.expect_response(lambda r: r.url.endswith("/predict")) as info:
        action()
    response = info.value
    rid = response.headers["x-request-id"]
    if response.ok:
        page.locator(f'#result[data-request-id="{rid}"]').wait_for()
    return response


def multipart_parts(request: Any) -> dict[str, bytes]:
    """The fields and files of the multipart body the page sent, by name."""
    ctype = request.headers["content-type"]
    assert ctype.startswith("multipart/form-data"), ctype
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    parts: dict[str, bytes] = {}
    for chunk in request.post_data_buffer.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        assert name, head
        parts[name.group(1).decode()] = content.removesuffix(b"\r\n")
    return parts


def api_predict(base: str, model: str, parts: dict[str, bytes], **headers: str) -> httpx.Response:
    """The same inputs posted by the test itself, as JSON with base64 media (the other route in)."""
    options: dict[str, Any] = {"top_k": int(parts["top_k"]), "explain": True}
    if "min_confidence" in parts:
        options["min_confidence"] = float(parts["min_confidence"])
    if "abstain_on_conflict" in parts:
        options["abstain_on_conflict"] = parts["abstain_on_conflict"] == b"true"
    body: dict[str, Any] = {"options": options}
    for media in ("image", "audio"):
        if media in parts:
            body[media] = {"b64": base64.b64encode(parts[media]).decode()}
    if "text" in parts:
        body["text"] = parts["text"].decode()
    return httpx.post(f"{base}/v1/models/{model}/predict", json=body, headers=headers, timeout=30)


def shown_probabilities(page: Any) -> list[tuple[str, float, str]]:
    """(label, exact probability, the text a person sees) for each bar of the answer."""
    rows = page.locator("#result ol.bars li")
    return [
        (
            rows.nth(i).get_attribute("data-label"),
            float(rows.nth(i).get_attribute("data-probability")),
            rows.nth(i).locator(".value").inner_text(),
        )
        for i in range(rows.count())
    ]


def best_match(recorded: bytes, reference: bytes, window: int = 2000) -> float:
    """How closely the recording follows the (looped) reference clip: the median, over windows of
    ``window`` samples, of each window's highest normalised cross-correlation with the reference.

    Windows, because the capture path (the fake device's loop, two resamplings) may drop or
    repeat a few samples, which shifts the alignment within one clip. Short ones (125 ms at
    16 kHz), because a busy machine glitches often: a CI run scored 0.73 with 4000-sample windows.
    Simulated drops of 5-40 samples every 4000 score 0.70 with 4000-sample windows and 1.00 with
    2000; another voice or white noise scores 0.09 either way.
    """
    x, _ = sf.read(io.BytesIO(recorded), dtype="float32")
    y, _ = sf.read(io.BytesIO(reference), dtype="float32")
    y = np.tile(y, 2)
    energy = np.convolve(y**2, np.ones(window), mode="valid")
    n = len(y) + window
    spectrum = np.fft.rfft(y, n)
    scores = []
    for start in range(0, len(x) - window + 1, window):
        w = x[start : start + window]
        dots = np.fft.irfft(spectrum * np.conj(np.fft.rfft(w, n)), n)[: len(y) - window + 1]
        scores.append(np.max(dots / (np.linalg.norm(w) * np.sqrt(energy) + 1e-9)))
    return float(np.median(scores))


WIDE_SPEC = DecodeParams(image_size=32, image_normalize=False, sample_rate=8000, audio_samples=16000)
"""``wide``'s spec: 32x32 grey, 2 s at 8 kHz, 64 bytes (the fake graphs take 16000 audio samples
and 64 text bytes, so the rate and the image side are what can differ)."""


def write_spec_models(root: Path) -> Path:
    """A model repository of two fake fusion models: ``late`` (the digits' spec) and ``wide``."""
    fakes.write_model(root, "late", 1, fakes.ALL, seed=3)
    inputs = [WIDE_SPEC.input_spec(m) for m in (*fakes.ALL, "mask")]
    manifest = fakes.make_manifest("wide", 1, fakes.ALL, inputs=inputs, decode=WIDE_SPEC)
    fakes.write_model(root, "wide", 1, fakes.ALL, seed=8, image_size=32, manifest=manifest)
    return root


def spec_line(spec: dict[str, Any]) -> str:
    """What the page should say by the model picker for a card's ``spec`` (a model taking all three)."""
    colour = "grey" if spec["image_channels"] == 1 else "RGB"
    return (
        f"takes {spec['image_size']}×{spec['image_size']} {colour} · {spec['audio_seconds']:g} s at "
        f"{spec['sample_rate'] / 1000:g} kHz · {spec['text_bytes']} bytes of text"
    )


def tone_wav(path: Path, seconds: float, rate: int) -> Path:
    """A WAV of a 440 Hz tone (16-bit mono), e.g. longer or at another rate than a model's spec."""
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")
    return path
