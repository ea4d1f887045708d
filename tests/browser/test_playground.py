"""The web playground in a real Chromium: what it shows is what the API answers for the same inputs.

Each test opens a fresh tab on a live server with the committed models. The page's requests are
captured as sent (the PNG drawn on the canvas, the WAV recorded from the fake microphone) and
posted again by the test, as JSON with base64 media, to compare answers.
"""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from tests.browser.helpers import (
    API_KEY,
    FAKE_MIC_WAV,
    ROOT,
    api_predict,
    best_match,
    draw,
    multipart_parts,
    predict_response,
    record,
    shown_probabilities,
    spec_line,
    tone_wav,
)

pytestmark = pytest.mark.browser
SCREENSHOT = ROOT / "docs" / "img" / "playground.png"
"""Written only with FUSION_PLAYGROUND_SCREENSHOT=1 (the README's picture); else to a temp folder."""


def assert_page_shows(page: Any, api: dict[str, Any]) -> None:
    """The answer on the page is the API's: label, probabilities, modalities, opinions, contributions."""
    assert page.get_by_test_id("answer-label").inner_text() == (api["label"] or "uncertain")
    shown = shown_probabilities(page)
    assert [label for label, *_ in shown] == [p["label"] for p in api["probabilities"]]
    expected = [p["probability"] for p in api["probabilities"]]
    assert [p for _, p, _ in shown] == pytest.approx(expected, abs=1e-5)
    assert [text for *_, text in shown] == [f"{100 * p['probability']:.1f}%" for p in api["probabilities"]]
    assert page.get_by_test_id("used").inner_text() == "used: " + ", ".join(api["modalities_used"])
    missing = ", ".join(api["modalities_missing"]) or "none"
    assert page.get_by_test_id("missing").inner_text() == f"missing: {missing}"
    for modality, opinion in (api["opinions"] or {}).items():
        row = page.locator(f'#result table.opinions tr[data-modality="{modality}"] td')
        assert row.nth(0).inner_text() == opinion["label"]
    for modality, value in (api["contributions"] or {}).items():
        bar = page.locator(f'#result li[data-modality="{modality}"]')
        assert float(bar.get_attribute("data-contribution")) == pytest.approx(value, abs=1e-5)
    agreement = page.get_by_test_id("agreement").inner_text()
    assert ("agree" in agreement) if api["agreement"]["agree"] else agreement.startswith("⚠ Conflict")
    assert "(its own time)" in page.get_by_test_id("latency").inner_text()  # from Server-Timing
    note = page.locator("#result").get_by_test_id("adjusted")
    if api["adjusted"]:  # what the server did to fit the spec, for exactly the modalities it names
        assert note.get_attribute("data-modalities") == " ".join(api["adjusted"])
    else:
        assert note.count() == 0


def test_the_page_and_its_files_are_served_with_a_strict_policy(server: str) -> None:
    page = httpx.get(f"{server}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "connect-src 'self'" in policy and "script-src 'self'" in policy
    for name in ("app.js", "wav.js", "recorder.js", "capture-worklet.js", "style.css"):
        asset = httpx.get(f"{server}/playground/{name}", timeout=10)
        assert asset.status_code == 200, name
    assert "javascript" in httpx.get(f"{server}/playground/app.js").headers["content-type"]
    assert httpx.get(f"{server}/playground/../main.py").status_code == 404
    assert "/" not in httpx.get(f"{server}/openapi.json").json()["paths"]


def test_every_page_file_ships_in_the_wheel() -> None:
    """The wheel (and so the Docker image) holds only the files pyproject's package-data names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["app"]
    folder = ROOT / "app" / "playground"
    files = [f.relative_to(ROOT / "app").as_posix() for f in folder.iterdir() if f.is_file()]
    assert "playground/index.html" in files
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []


def test_draw_record_type_then_switch_audio_off(server: str, new_page: Any, tmp_path: Path) -> None:
    page = new_page(f"{server}/", viewport={"width": 1100, "height": 900})
    elsewhere: list[str] = []
    ours = (server, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(ours) else elsewhere.append(r.url))
    page.get_by_label("Model", exact=True).select_option("late")
    draw(page)
    page.get_by_label("The digit as a word").fill("sept")
    record(page)

    response = predict_response(page, lambda: page.get_by_role("button", name="Predict").click())
    assert response.status == 200
    parts = multipart_parts(response.request)
    assert set(parts) >= {"image", "audio", "text"} and parts["text"] == b"sept"
    assert parts["image"].startswith(b"\x89PNG\r\n\x1a\n")
    wav = sf.info(io.BytesIO(parts["audio"]))
    assert (wav.format, wav.subtype, wav.samplerate, wav.channels) == ("WAV", "PCM_16", 16000, 1)
    assert wav.duration >= 2.0
    assert best_match(parts["audio"], FAKE_MIC_WAV.read_bytes()) > 0.8  # the microphone's clip, recorded
    api = api_predict(server, "late", parts).json()
    assert api["modalities_used"] == ["image", "audio", "text"]
    assert_page_shows(page, api)
    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    if os.environ.get("FUSION_PLAYGROUND_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "playground.png", SCREENSHOT)

    # switching a modality off re-asks the server at once, without it
    response = predict_response(page, lambda: page.get_by_label("Use audio").uncheck())
    parts = multipart_parts(response.request)
    assert "audio" not in parts and {"image", "text"} <= set(parts)
    api = api_predict(server, "late", parts).json()
    assert api["modalities_missing"] == ["audio"]
    assert_page_shows(page, api)
    assert elsewhere == []


def test_compare_sends_the_same_inputs_to_every_model(server: str, new_page: Any) -> None:
    page = new_page(f"{server}/")
    page.locator("#image-file").set_input_files(str(ROOT / "examples" / "seven.png"))
    page.locator("#audio-file").set_input_files(str(ROOT / "examples" / "seven.wav"))
    page.get_by_label("The digit as a word").fill("sept")
    page.get_by_label("Use text").uncheck()
    page.get_by_role("button", name="Compare all models").click()
    page.locator("#comparison[data-seq]").wait_for()

    models = httpx.get(f"{server}/v1/models").json()["models"]
    parts = {
        "image": (ROOT / "examples" / "seven.png").read_bytes(),
        "audio": (ROOT / "examples" / "seven.wav").read_bytes(),
        "top_k": b"5",
    }
    for model in models:
        row = page.locator(f'#comparison tr[data-model="{model["name"]}"]')
        given = {m: parts[m] for m in model["modalities"] if m in parts}
        cells = row.locator("td")
        if not given:  # text_only: its one modality is switched off
            assert "nothing it takes" in cells.nth(2).inner_text()
            continue
        api = api_predict(server, model["name"], {**given, "top_k": b"5"}).json()
        assert row.get_attribute("data-label") == api["label"], model["name"]
        assert cells.nth(1).inner_text() == " + ".join(api["modalities_used"])
        meta = httpx.get(f"{server}/v1/models/{model['name']}").json()["metrics"]
        assert cells.nth(6).inner_text() == f"{100 * meta['test_accuracy']:.1f}%"


def test_an_abstention_shows_uncertain_with_the_conflict(server: str, new_page: Any) -> None:
    page = new_page(f"{server}/")
    page.locator("#image-file").set_input_files(str(ROOT / "examples" / "seven.png"))
    page.locator("#audio-file").set_input_files(str(ROOT / "examples" / "seven.wav"))
    page.get_by_label("The digit as a word").fill("cinq")  # five: the text disagrees with the rest
    page.get_by_label("Abstain when the modalities disagree").check()
    response = predict_response(page, lambda: page.get_by_role("button", name="Predict").click())
    parts = multipart_parts(response.request)
    assert parts["abstain_on_conflict"] == b"true"
    api = api_predict(server, "late", parts).json()
    assert api["status"] == "uncertain" and api["abstention"]["reasons"] == ["conflict"]
    assert_page_shows(page, api)
    assert page.get_by_test_id("answer-label").inner_text() == "uncertain"
    assert f"best guess {api['abstention']['label']}" in page.locator("#result .headline").inner_text()

    # a threshold above the best guess abstains for low confidence too
    page.get_by_label("Abstain below probability").fill("0.99")
    response = predict_response(page, lambda: page.get_by_label("Abstain below probability").press("Tab"))
    api = api_predict(server, "late", multipart_parts(response.request)).json()
    assert api["abstention"]["reasons"] == ["low_confidence", "conflict"]
    assert_page_shows(page, api)


def test_a_corrupt_upload_shows_the_servers_message(server: str, new_page: Any) -> None:
    page = new_page(f"{server}/", bypass_csp=False)  # the page works under its own policy
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.locator("#image-file").set_input_files(
        files=[{"name": "digit.png", "mimeType": "image/png", "buffer": b"this is not a PNG"}]
    )
    page.get_by_label("Use audio").uncheck()
    response = predict_response(page, lambda: page.get_by_role("button", name="Predict").click())
    assert response.status == 400
    message = response.json()["error"]
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text().startswith(f"400: {message}")
    assert page.locator("#result").is_hidden()
    assert [m for m in console if "Content Security Policy" in m] == []


def test_a_server_with_an_api_key(key_server: str, new_page: Any) -> None:
    page = new_page(f"{key_server}/")
    page.get_by_text("This server needs an API key").wait_for()
    assert page.get_by_role("button", name="Predict").is_disabled()
    key = page.get_by_label("API key")
    key.fill(API_KEY)
    key.press("Tab")  # the change event stores it and lists the models
    page.locator("#model:not([disabled])").wait_for()
    page.get_by_label("The digit as a word").fill("seven")
    response = predict_response(page, lambda: page.get_by_role("button", name="Predict").click())
    assert response.request.headers["x-api-key"] == API_KEY
    assert page.get_by_test_id("answer-label").inner_text() == "7"
    storage = page.evaluate("[sessionStorage.getItem('fusionserve.apiKey'), localStorage.length]")
    assert storage == [API_KEY, 0]


def test_keyboard_only_at_phone_width(server: str, new_page: Any) -> None:
    page = new_page(f"{server}/", viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page.locator("#model:not([disabled])").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, button, canvas')]
           .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                         && !el.textContent.trim()).map(el => el.id)"""
    )
    assert unlabelled == []
    page.locator("#pad").focus()
    page.keyboard.press("Space")  # pen down
    for key in ["ArrowRight"] * 6 + ["ArrowDown"] * 8:
        page.keyboard.press(key)
    page.keyboard.press("Space")  # pen up: the stroke ends
    assert page.locator("#image-state").inner_text() == "Drawn."
    page.get_by_label("Use audio").uncheck()
    page.get_by_label("The digit as a word").fill("sieben")
    response = predict_response(page, lambda: page.get_by_label("The digit as a word").press("Enter"))
    parts = multipart_parts(response.request)
    assert {"image", "text"} <= set(parts)
    assert_page_shows(page, api_predict(server, "late", parts).json())


def shown_spec(page: Any, expected: str) -> str:
    """The spec line by the model picker, once it says ``expected`` (the card is fetched after the list)."""
    line = page.get_by_test_id("spec")
    line.filter(has_text=expected).wait_for()
    return str(line.inner_text())


def test_the_spec_line_shows_the_selected_models_spec(server: str, new_page: Any) -> None:
    page = new_page(f"{server}/", bypass_csp=False)
    card = httpx.get(f"{server}/v1/models/late", timeout=10).json()
    assert card["spec"]["summary"] == "28x28 grey, 1 s at 16000 Hz, 64 bytes"
    assert shown_spec(page, spec_line(card["spec"])) == "takes 28×28 grey · 1 s at 16 kHz · 64 bytes of text"
    # a unimodal baseline: only what it takes
    page.get_by_label("Model", exact=True).select_option("audio_only")
    assert shown_spec(page, "takes 1 s at 16 kHz") == "takes 1 s at 16 kHz"


def test_an_answer_says_what_the_server_changed_to_fit_the_spec(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    page = new_page(f"{server}/")
    page.get_by_label("Model", exact=True).select_option("late")
    shown_spec(page, "64 bytes of text")
    clip = tone_wav(tmp_path / "long.wav", 3.2, 44_100)
    page.locator("#audio-file").set_input_files(str(clip))
    text = page.get_by_label("The digit as a word")
    text.fill("sept")
    count = page.get_by_test_id("text-count")
    assert count.inner_text() == "4 of 64 bytes (UTF-8); longer text is cut"
    long_text = "sept " + "é" * 40  # 85 bytes in UTF-8, 45 characters
    text.fill(long_text)
    assert count.get_attribute("data-bytes") == "85"
    assert count.inner_text() == "85 of 64 bytes (UTF-8): the model reads the first 64, the rest is cut"
    page.get_by_label("Use image").uncheck()

    response = predict_response(page, lambda: page.get_by_role("button", name="Predict").click())
    parts = multipart_parts(response.request)
    assert parts["audio"] == clip.read_bytes() and parts["text"] == long_text.encode()
    api = api_predict(server, "late", parts).json()
    assert api["adjusted"]["audio"]["actions"] == ["resampled", "cut"]
    assert api["adjusted"]["text"]["to"] == {"bytes": 63, "characters": 34}  # never half an é
    assert_page_shows(page, api)
    note = page.locator("#result").get_by_test_id("adjusted").inner_text()
    assert note == (
        "To fit the model's input spec, the server resampled the audio 44.1 kHz → 16 kHz, "
        "kept 1 s of 3.2 s of audio (the loudest part) "
        "and cut the text 85 → 63 bytes (45 → 34 characters)."
    )

    # the comparison: a short note per model
    page.get_by_role("button", name="Compare all models").click()
    page.locator("#comparison[data-seq]").wait_for()
    fitted = page.locator('#comparison tr[data-model="late"] td.fitted').inner_text()
    assert fitted.splitlines() == ["audio 44.1 → 16 kHz, 3.2 → 1 s", "text 85 → 63 bytes"]
    image_only = page.locator('#comparison tr[data-model="image_only"] td.fitted')
    assert image_only.inner_text() == ""  # nothing it takes was sent: no answer, no note


def test_the_spec_line_and_the_recording_follow_the_model(spec_server: str, new_page: Any) -> None:
    page = new_page(f"{spec_server}/")
    for name in ("late", "wide"):
        page.get_by_label("Model", exact=True).select_option(name)
        card = httpx.get(f"{spec_server}/v1/models/{name}", timeout=10).json()
        shown_spec(page, spec_line(card["spec"]))
    assert page.get_by_test_id("spec").inner_text() == "takes 32×32 grey · 2 s at 8 kHz · 64 bytes of text"

    record(page, seconds=1.0)
    assert " at 8 kHz (mono WAV" in page.locator("#audio-state").inner_text()
    page.get_by_label("Use image").uncheck()
    response = predict_response(page, lambda: page.get_by_role("button", name="Predict").click())
    parts = multipart_parts(response.request)
    wav = sf.info(io.BytesIO(parts["audio"]))
    assert (wav.samplerate, wav.channels, wav.subtype) == (8000, 1, "PCM_16")  # recorded at wide's rate
    assert 1.0 <= wav.duration < 2.0
    api = api_predict(spec_server, "wide", parts).json()
    assert api["adjusted"]["audio"]["actions"] == ["padded"]  # not resampled: the page sent 8 kHz
    assert_page_shows(page, api)
    note = page.locator("#result").get_by_test_id("adjusted").inner_text()
    seconds = api["adjusted"]["audio"]["from"]["seconds"]
    assert f"padded {float(f'{seconds:.2f}'):g} s of audio to 2 s with silence" in note
