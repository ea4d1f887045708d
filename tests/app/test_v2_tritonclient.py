"""The official V2 client, ``tritonclient.http``, unmodified, against a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
import uvicorn
from tritonclient.utils import InferenceServerException

from app.config import Settings
from app.main import create_app
from app.media import encode_text
from tests.app import fakes
from tests.app.v2_helpers import reference, sample_inputs, texts, triton_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private repository: the repository-control test copies a version into it."""
    return fakes.write_repository(tmp_path_factory.mktemp("triton-models"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[str]:
    """Serve the app on a free port in a background thread; yields ``host:port``."""
    app = create_app(Settings(models_dir=repo, log_level="warning", repository_control=True))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-v2", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and app.state.repository.ready):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def tc(server: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(url=server, network_timeout=30.0) as c:
        yield c


def test_health_and_server_metadata(tc: triton.InferenceServerClient) -> None:
    assert tc.is_server_live()
    assert tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "fusionserve"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(tc: triton.InferenceServerClient) -> None:
    meta = tc.get_model_metadata("gated")
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]} == {
        "image": ("UINT8", [-1, 28, 28]),
        "audio": ("FP32", [-1, 16000]),
        "text": ("UINT8", [-1, 64]),
        "mask": ("FP32", [-1, 3]),
    }
    assert [t["name"] for t in meta["outputs"]] == ["logits", "weights"]
    assert tc.get_model_metadata("late", "1")["versions"] == ["1", "2"]
    assert tc.is_model_ready("late")
    assert tc.is_model_ready("late", "1")
    assert not tc.is_model_ready("broken")
    assert not tc.is_model_ready("nope")
    with pytest.raises(InferenceServerException) as info:
        tc.get_model_metadata("nope")
    assert info.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_binary_data_on_and_off(
    tc: triton.InferenceServerClient, repo: Path, binary: bool
) -> None:
    inputs = sample_inputs(rows=2, seed=4)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "weights")]
    result = tc.infer("gated", triton_inputs(inputs, binary), outputs=outputs, request_id="t-1")
    want = reference(repo, "gated", 1, inputs)
    for name in ("logits", "weights"):
        np.testing.assert_allclose(result.as_numpy(name), want[name], rtol=1e-5)
        assert ("data" in result.get_output(name)) is not binary
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("gated", "1", "t-1")


def test_infer_with_default_outputs_and_a_named_version(tc: triton.InferenceServerClient, repo: Path) -> None:
    inputs = sample_inputs(rows=1, seed=6)
    result = tc.infer("late", triton_inputs(inputs), model_version="1")
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(
        result.as_numpy("logits"), reference(repo, "late", 1, inputs)["logits"], rtol=1e-5
    )


@pytest.mark.parametrize("binary", [True, False])
def test_text_as_bytes_equals_text_as_uint8(tc: triton.InferenceServerClient, binary: bool) -> None:
    words = texts("sept", "élan", "nine")
    as_bytes = tc.infer("late", triton_inputs({"text": words}, binary)).as_numpy("logits")
    encoded = np.stack([encode_text(w.decode()) for w in words])
    as_uint8 = tc.infer("late", triton_inputs({"text": encoded}, binary)).as_numpy("logits")
    np.testing.assert_array_equal(as_bytes, as_uint8)


def test_omitted_modalities_are_masked(tc: triton.InferenceServerClient, repo: Path) -> None:
    full = sample_inputs(rows=2, seed=8, mask=False)
    partial = {"image": full["image"], "audio": full["audio"]}
    result = tc.infer("intermediate", triton_inputs(partial))
    want = reference(repo, "intermediate", 1, partial)["logits"]
    np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=1e-5)


def test_classification_and_compression(tc: triton.InferenceServerClient) -> None:
    inputs = triton_inputs(sample_inputs(rows=1, seed=1))
    outputs = [triton.InferRequestedOutput("logits", class_count=2)]
    result = tc.infer(
        "early",
        inputs,
        outputs=outputs,
        request_compression_algorithm="gzip",
        response_compression_algorithm="deflate",
    )
    top = [v.decode() for v in result.as_numpy("logits").ravel()]
    assert len(top) == 2
    assert [t.split(":")[1] == t.split(":")[2] for t in top] == [True, True]  # index:label ("0".."9")


def test_errors_reach_the_client_with_status_and_message(tc: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("audio", [1, 8000], "FP32").set_data_from_numpy(np.zeros((1, 8000), np.float32))
    with pytest.raises(InferenceServerException) as info:
        tc.infer("late", [wrong])
    assert info.value.status() == "400"
    assert "input 'audio' has shape [1, 8000]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        tc.infer("broken", triton_inputs({"text": texts("un")}))
    assert info.value.status() == "503"


def test_load_and_unload(tc: triton.InferenceServerClient, repo: Path) -> None:
    inputs = triton_inputs(sample_inputs(rows=1, seed=2))
    tc.unload_model("late")
    assert not tc.is_model_ready("late")
    with pytest.raises(InferenceServerException) as info:
        tc.infer("late", inputs)
    assert info.value.status() == "503"
    assert tc.is_model_ready("gated")  # the others are not disturbed
    assert tc.infer("gated", inputs).as_numpy("logits") is not None

    fakes.write_model(repo, "late", 3, fakes.ALL, seed=13)  # copied in after start
    tc.load_model("late")
    assert tc.is_model_ready("late")
    assert tc.is_model_ready("late", "3")
    assert tc.get_model_metadata("late")["versions"] == ["1", "2", "3"]
    assert tc.infer("late", inputs).get_response()["model_version"] == "3"
    index = {(m["name"], m["version"]): m["state"] for m in tc.get_model_repository_index()}
    assert index[("late", "3")] == "READY"
    with pytest.raises(InferenceServerException) as info:
        tc.load_model("nope")
    assert info.value.status() == "404"
