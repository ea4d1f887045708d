"""Input specs end to end: every model kind at any spec, and a tiny spec (32x32 RGB, 0.5 s at
16 kHz, 128 bytes) trained, exported and served beside a committed digits model."""

from __future__ import annotations

import base64
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from app.main import create_app
from app.manifest import DecodeParams, Manifest
from fusion_client import AsyncClient
from tests.media_fixtures import audio_bytes, image_bytes, tone
from tests.training.spec_data import CLASSES, TINY, picture, write_manifest
from training.data import load_dataset
from training.data.spec import make_spec
from training.fusion import build_model
from training.graph import featurize, wrap
from training.pipeline import ALL_MODELS, latest_models, run

MODELS = Path(__file__).resolve().parents[2] / "models"
SPECS = {
    "tiny": make_spec(TINY),
    "grey-8k": make_spec({"image_size": 20, "sample_rate": 8000, "audio_seconds": 0.3, "text_bytes": 16}),
    "photo": make_spec({"image_size": 224, "image_channels": 3, "audio_seconds": 5.0, "text_bytes": 300}),
}


def _inputs(spec: DecodeParams, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (n, *spec.input_spec("image").shape[1:]), dtype=np.uint8),
        "audio": (rng.standard_normal((n, spec.audio_samples)) * 0.1).astype(np.float32),
        "text": rng.integers(0, 256, (n, spec.text_bytes), dtype=np.uint8),
    }


@pytest.mark.parametrize("spec_name", list(SPECS))
def test_every_model_kind_runs_at_any_spec(spec_name: str) -> None:
    spec = SPECS[spec_name]
    arrays = _inputs(spec, 2)
    feats = featurize(arrays["image"], arrays["audio"], arrays["text"], spec=spec)
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    for name in ALL_MODELS:
        model = build_model(name, 4, spec).eval()
        with torch.no_grad():
            out = model(feats, mask, branches=True)
            graph = wrap(model)  # the exported graph takes the spec's raw tensors
            raw = [torch.from_numpy(arrays[m]) for m in ("image", "audio", "text")]
            logits = (
                graph(raw[("image", "audio", "text").index(graph.modality)])
                if name.endswith("_only")
                else graph(*raw, mask)
            )
        assert out["logits"].shape == (2, 4), name
        assert torch.isfinite(out["logits"]).all(), name
        first = logits[0] if isinstance(logits, tuple) else logits
        torch.testing.assert_close(first, out["logits"], rtol=1e-4, atol=1e-4)


def test_encoders_grow_with_the_input_but_stay_small() -> None:
    params = {
        k: sum(p.numel() for p in build_model("intermediate", 4, s).parameters()) for k, s in SPECS.items()
    }
    digits = sum(p.numel() for p in build_model("intermediate", 4).parameters())
    assert params["photo"] < 3 * digits  # deeper and strided, not wider


def test_the_built_in_digits_refuse_another_spec() -> None:
    with pytest.raises(ValueError, match="built-in digits are made at 28x28 grey"):
        load_dataset("default", limit=10, spec={"image_size": 32})


@asynccontextmanager
async def _serve(models: Path) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncClient]]:
    """The app over ``models``: a plain HTTP client and the SDK, both in-process."""
    app = create_app(Settings(models_dir=models))
    async with app.router.lifespan_context(app):
        await app.state.repository.wait_ready()
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            AsyncClient("http://test", transport=transport) as sdk,
        ):
            yield client, sdk


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny spec's gated fusion and audio baseline, next to the committed digits ``late``."""
    data = write_manifest(tmp_path_factory.mktemp("tiny-data"))
    out = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    run(["gated", "audio_only"], source=str(data), epochs=3, out=out, progress=False, spec=TINY)
    shutil.copytree(next(iter(sorted((MODELS / "late").iterdir()))), out / "late" / "1")
    return out


@pytest.mark.slow
def test_a_tiny_spec_trains_exports_and_is_written_to_the_manifest(repository: Path) -> None:
    dirs = {d.parent.name: d for d in latest_models(repository)}
    gated = Manifest.read(dirs["gated"] / "manifest.json")
    assert gated.decode == SPECS["tiny"] and not gated.decode.image_normalize
    shapes = {t.name: t.shape for t in gated.inputs}
    assert shapes == {"image": [-1, 32, 32, 3], "audio": [-1, 8000], "text": [-1, 128], "mask": [-1, 3]}
    assert Manifest.read(dirs["audio_only"] / "manifest.json").inputs[0].shape == [-1, 8000]
    assert gated.metrics["test_accuracy"] >= 0.6  # chance is 1/3; 12 test rows after 3 epochs
    assert Manifest.read(dirs["late"] / "manifest.json").decode == DecodeParams()


@pytest.mark.slow
async def test_specs_are_served_side_by_side_and_cuts_are_reported(repository: Path) -> None:
    rng = np.random.default_rng(7)
    png = base64.b64encode(image_bytes(picture(CLASSES["blue"][0], rng, side=64))).decode()
    wav = base64.b64encode(audio_bytes(tone(2.0, 44_100, CLASSES["blue"][1], 0.4), 44_100)).decode()
    text = "a blue thing, " + "and more words " * 20
    async with _serve(repository) as (client, sdk):
        meta = (await client.get("/v2/models/gated")).json()
        assert {t["name"]: t["shape"] for t in meta["inputs"]}["image"] == [-1, 32, 32, 3]
        assert meta["parameters"]["input_spec"] == "32x32 RGB, 0.5 s at 16000 Hz, 128 bytes"
        card = (await client.get("/v1/models/gated")).json()
        assert card["spec"]["image_channels"] == 3 and card["spec"]["audio_seconds"] == 0.5
        assert (await client.get("/v1/models/late")).json()["spec"]["summary"].startswith("28x28 grey")
        answer = (
            await client.post(
                "/v1/models/gated/predict",
                json={
                    "image": {"b64": png},
                    "audio": {"b64": wav},
                    "text": text,
                    "options": {"explain": True},
                },
            )
        ).json()
        assert answer["label"] == "blue"
        assert set(answer["contributions"]) == {"image", "audio", "text"}  # explained at this spec too
        adjusted = answer["adjusted"]
        assert adjusted["image"]["to"] == {"width": 32, "height": 32, "mode": "RGB"}
        assert adjusted["audio"]["actions"] == ["resampled", "cut"]
        assert "cut from 2.00 s to 0.50 s" in adjusted["audio"]["message"]
        assert adjusted["text"]["to"]["bytes"] <= 128 < adjusted["text"]["from"]["bytes"]
        digits = (await client.post("/v1/models/late/predict", json={"text": "seven"})).json()
        assert digits["label"] == "7" and digits["adjusted"] is None  # the digits' spec, unchanged
        v2 = await client.post(
            "/v2/models/gated/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a red thing"]}]},
        )
        assert v2.status_code == 200, v2.text
        info = await sdk.model("gated")  # the SDK reads the spec and the cuts too
        assert info.spec is not None and (info.spec.image_size, info.spec.image_channels) == (32, 3)
        cut = await sdk.predict("gated", text=text)
        assert cut.adjusted is not None and cut.adjusted["text"].actions == ["cut"]
        assert cut.adjusted["text"].served["bytes"] <= 128


def test_the_cli_chooses_or_derives_the_spec(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    data = write_manifest(tmp_path, per_class=2)
    derived = CliRunner().invoke(app, ["data", "--data", str(data), "--no-progress"])
    assert derived.exit_code == 0, derived.output
    assert "input spec: 48x48 RGB, " in derived.output  # from the headers: 48x48 colour pictures
    assert " at 16000 Hz, 192 bytes" in derived.output  # 22 kHz clips; the long texts fit whole
    chosen = ["--image-size", "40", "--image-channels", "1", "--audio-seconds", "2", "--text-bytes", "96"]
    result = CliRunner().invoke(app, ["data", "--data", str(data), "--no-progress", *chosen])
    assert "input spec: 40x40 grey, 2 s at 16000 Hz, 96 bytes" in result.output, result.output
    bad = CliRunner().invoke(app, ["data", "--data", str(data), "--image-channels", "2"])
    assert bad.exit_code != 0 and "1 (grey) or 3 (RGB)" in bad.output
