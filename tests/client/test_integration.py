"""The SDK and CLI against a live server: ``python -m app`` on a free port, serving the committed models.

Also runs the SDK and CLI examples of docs/client.md and the README as written (from the
repository root, so ``examples/`` resolves), with the server's URL in place of
``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from bench.server import ServerProcess, free_port
from fusion_client import AsyncClient, Client, InvalidInput, NotFound

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEFAULT_URL = "http://127.0.0.1:8000"
FUSIONS = {"early", "intermediate", "late", "gated"}
CLI = str(Path(sys.executable).with_name("fusionserve"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the real server on the committed models; yield its URL."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess(REPO / "models", env={"FUSION_LOG_LEVEL": "info"}, log=log) as live:
        yield live.url


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A drawn seven (PNG) and one second of tone (WAV) on disk."""
    folder = tmp_path_factory.mktemp("media")
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[5:8, 6:22] = 255
    for row in range(8, 24):
        pixels[row, 21 - (row - 8) // 2 : 24 - (row - 8) // 2] = 255
    Image.fromarray(pixels).save(folder / "seven.png")
    sf.write(folder / "seven.wav", tone(rate=16000)[0], 16000)
    return {"image": folder / "seven.png", "audio": folder / "seven.wav"}


def tone(seconds: float = 1.0, rate: int = 22050) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate


def test_health_and_model_listing(server: str) -> None:
    with Client(server) as client:
        assert client.live() and client.ready()
        models = {m.name: m for m in client.models()}
        assert FUSIONS <= models.keys() and all(models[name].ready for name in FUSIONS)
        card = client.model("late")
        assert card.labels == [str(i) for i in range(10)]
        assert card.modalities == ["image", "audio", "text"] and card.version in card.versions
        with pytest.raises(NotFound):
            client.model("no_such_model")
        with pytest.raises(NotFound):
            client.model("late", version=999)


@pytest.mark.parametrize("model", sorted(FUSIONS))
def test_predict_with_every_modality_and_input_kind(server: str, media: dict[str, Path], model: str) -> None:
    with Client(server) as client:
        from_files = client.predict(model, image=media["image"], audio=media["audio"], text="sept", top_k=3)
        pixels = np.asarray(Image.open(media["image"]))
        wave, rate = sf.read(media["audio"], dtype="float32")
        from_arrays = client.predict(model, image=pixels, audio=(wave, rate), text="sept")
    assert from_files.model == model and from_files.label in [str(i) for i in range(10)]
    assert len(from_files.probabilities) == 3
    probs = [p.probability for p in from_files.probabilities]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert from_files.modalities_used == ["image", "audio", "text"] and from_files.modalities_missing == []
    assert from_arrays.label == from_files.label


def test_a_missing_modality_is_a_normal_request_and_explain_names_the_rest(server: str) -> None:
    with Client(server) as client:
        answer = client.predict("gated", text="sieben", audio=tone(), explain=True)
    assert answer.modalities_used == ["audio", "text"] and answer.modalities_missing == ["image"]
    assert answer.contributions is not None and set(answer.contributions) == {"audio", "text"}
    assert answer.explain_method == "shapley" and answer.explanation is not None
    assert answer.explanation.gate_weights is not None and set(answer.explanation.gate_weights) == {
        "audio",
        "text",
    }
    assert answer.opinions is not None and set(answer.opinions) == {"audio", "text"}
    assert answer.agreement is not None and answer.status == "ok"


def test_predict_many_keeps_request_order(server: str, media: dict[str, Path]) -> None:
    instances: list[dict[str, Any]] = [
        {"text": "sept"},
        {"image": media["image"]},
        {"audio": tone(), "text": "deux"},
        {"text": "nine"},
    ]
    with Client(server) as client:
        many = client.predict_many("late", instances)
        one_by_one = [client.predict("late", **instance) for instance in instances]
    assert [p.label for p in many] == [p.label for p in one_by_one]
    assert [p.modalities_used for p in many] == [["text"], ["image"], ["audio", "text"], ["text"]]


def test_server_errors_reach_the_caller_with_their_message(server: str) -> None:
    with Client(server) as client:
        with pytest.raises(InvalidInput) as caught:
            client.predict("late", image=b"definitely not an image")
        assert caught.value.status_code in (400, 422) and "image" in caught.value.message
        with pytest.raises(NotFound):
            client.predict("no_such_model", text="sept")


def test_async_client_agrees_with_the_sync_client(server: str, media: dict[str, Path]) -> None:
    texts = ["un", "deux", "trois", "sept", "nine", "zwei", "cinco", "otto"]
    with Client(server) as client:
        expected = [client.predict("late", text=t, image=media["image"]).label for t in texts]

    async def go() -> list[str]:
        async with AsyncClient(server) as aclient:
            assert await aclient.ready()
            answers = await asyncio.gather(
                *(aclient.predict("late", text=t, image=media["image"]) for t in texts)
            )
            assert len(await aclient.models()) >= len(FUSIONS)
            return [a.label for a in answers]

    assert asyncio.run(go()) == expected


def test_v2_infer_agrees_with_predict(server: str) -> None:
    text = np.zeros((1, 64), dtype=np.uint8)
    text[0, :4] = np.frombuffer(b"sept", dtype=np.uint8)
    inputs = {
        "image": np.zeros((1, 28, 28), dtype=np.uint8),
        "audio": np.zeros((1, 16000), dtype=np.float32),
        "text": text,
        "mask": np.array([[0, 0, 1]], dtype=np.float32),
    }
    with Client(server) as client:
        binary = client.infer("late", inputs)
        as_json = client.infer("late", inputs, binary=False)
        label = client.predict("late", text="sept").label_index
    assert binary["logits"].shape == (1, 10) and int(binary["logits"].argmax()) == label
    np.testing.assert_allclose(as_json["logits"], binary["logits"], rtol=1e-6)


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_")} | {"FUSION_URL": url}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


def test_cli_predict_and_models(server: str, media: dict[str, Path]) -> None:
    args = ["predict", "--model", "late", "--image", str(media["image"]), "--audio", str(media["audio"])]
    readable = run_cli(*args, "--text", "sept", url=server)
    machine = run_cli(*args, "--text", "sept", "--json", url=server)
    assert readable.returncode == 0 and machine.returncode == 0, readable.stderr + machine.stderr
    answer = json.loads(machine.stdout)
    assert readable.stdout.startswith(f"late v{answer['version']}: {answer['label']}")
    listing = run_cli("models", url=server)
    assert listing.returncode == 0 and re.search(r"^late\s+late\s", listing.stdout, re.MULTILINE)


def test_cli_explains_a_server_that_is_down() -> None:
    result = run_cli("models", "--timeout", "2", url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "cannot reach a fusionserve server" in result.stderr


def doc_examples(path: Path) -> list[tuple[str, str]]:
    """(kind, code) for every SDK example (python importing fusion_client) and CLI query line."""
    examples: list[tuple[str, str]] = []
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL):
        if lang == "python" and "fusion_client" in code:
            examples.append(("python", code))
        elif lang in ("bash", "console", "sh"):
            for line in code.replace("\\\n", " ").splitlines():
                words = shlex.split(line.removeprefix("$ "), comments=True)
                if words and words[0].endswith("fusionserve") and words[1:2] in (["predict"], ["models"]):
                    examples.append(("cli", line.removeprefix("$ ")))
    return examples


DOCS = [p for p in (REPO / "docs" / "client.md", REPO / "README.md") if p.exists()]


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_documented_examples_run_as_written(server: str, doc: Path) -> None:
    examples = doc_examples(doc)
    assert examples, f"{doc.name} has no SDK or CLI examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_")} | {"FUSION_URL": server}
    for kind, code in examples:
        code = code.replace(DEFAULT_URL, server)
        if kind == "python":
            cmd = [sys.executable, "-c", code]
        else:
            words = shlex.split(code, comments=True)
            cmd = [CLI, *words[1:]]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert result.returncode == 0, f"{doc.name} example failed:\n{code}\n{result.stdout}{result.stderr}"
