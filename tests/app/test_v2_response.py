"""Building V2 inference responses (app.v2.response) and gzip/deflate bodies (app.v2.compression)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from app.errors import InferenceFailed, PayloadTooLarge
from app.v2 import HEADER_LENGTH, InferRequest, RequestedOutput, V2Error, check_outputs, encode_infer_response
from app.v2.compression import compress, decompress, negotiate

LOGITS = np.array([[0.5, 2.0, -1.0], [3.0, 0.0, 1.0]], dtype=np.float32)
WEIGHTS = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32)
OUTPUTS = {"logits": LOGITS, "weights": WEIGHTS}


def request(outputs: list[RequestedOutput] | None = None, **kwargs: Any) -> InferRequest:
    return InferRequest(inputs={}, datatypes={}, outputs=outputs, **kwargs)


def encode(req: InferRequest, outputs: dict[str, np.ndarray] | None = None, **kwargs: Any) -> Any:
    """Encode, check the headers agree with the body, and read it back with tritonclient."""
    raw, headers = encode_infer_response(
        req, outputs or OUTPUTS, model_name="gated", model_version=2, **kwargs
    )
    length = headers.get(HEADER_LENGTH)
    if length is None:
        assert headers["Content-Type"] == "application/json"
        json.loads(raw)  # the whole body is the JSON document
    else:
        assert headers["Content-Type"] == "application/octet-stream"
        json.loads(raw[: int(length)])
    return triton.InferResult.from_response_body(raw, header_length=None if length is None else int(length))


def test_json_outputs_carry_name_datatype_shape_and_data() -> None:
    result = encode(request())
    doc = result.get_response()
    assert doc["model_name"] == "gated"
    assert doc["model_version"] == "2"
    assert "id" not in doc and "parameters" not in doc
    assert [o["name"] for o in doc["outputs"]] == ["logits", "weights"]
    logits = result.get_output("logits")
    assert logits["datatype"] == "FP32"
    assert logits["shape"] == [2, 3]
    assert logits["data"] == LOGITS.ravel().tolist()
    np.testing.assert_array_equal(result.as_numpy("weights"), WEIGHTS)


def test_a_non_finite_output_is_never_sent_as_invalid_json() -> None:
    broken = {"logits": np.array([[np.nan, 1.0, np.inf]], dtype=np.float32)}
    with pytest.raises(InferenceFailed, match="NaN or infinity.*binary_data"):
        encode_infer_response(request(), broken, model_name="m", model_version=1)
    binary = encode(request(binary_data_output=True), broken)  # binary carries IEEE floats as they are
    np.testing.assert_array_equal(binary.as_numpy("logits"), broken["logits"])


def test_binary_data_output_sends_every_output_binary() -> None:
    result = encode(request(binary_data_output=True))
    for name, want in OUTPUTS.items():
        entry = result.get_output(name)
        assert "data" not in entry
        assert entry["parameters"]["binary_data_size"] == want.nbytes
        np.testing.assert_array_equal(result.as_numpy(name), want)


def test_per_output_binary_data_overrides_the_request_default() -> None:
    outputs = [RequestedOutput("weights", binary_data=False), RequestedOutput("logits")]
    result = encode(request(outputs, binary_data_output=True))
    doc = result.get_response()
    assert [o["name"] for o in doc["outputs"]] == ["weights", "logits"]  # the order asked for
    assert "data" in result.get_output("weights")
    assert result.get_output("logits")["parameters"] == {"binary_data_size": LOGITS.nbytes}
    np.testing.assert_array_equal(result.as_numpy("logits"), LOGITS)
    np.testing.assert_array_equal(result.as_numpy("weights"), WEIGHTS)


def test_output_selection_returns_only_what_was_asked() -> None:
    result = encode(request([RequestedOutput("weights", binary_data=True)]))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["weights"]
    assert result.as_numpy("logits") is None


def test_id_and_parameters_are_echoed() -> None:
    doc = encode(request(id="abc", parameters={"trace": "on"})).get_response()
    assert doc["id"] == "abc"
    assert doc["parameters"] == {"trace": "on"}


def test_unknown_outputs_are_refused_before_and_after_inference() -> None:
    req = request([RequestedOutput("probabilities")])
    with pytest.raises(V2Error, match="unknown output 'probabilities'; the model has"):
        check_outputs(req, ["logits", "weights"])
    with pytest.raises(V2Error, match="unknown output 'probabilities'"):
        encode_infer_response(req, OUTPUTS, model_name="m", model_version=1)
    check_outputs(request([RequestedOutput("logits")]), ["logits"])  # a known one passes
    check_outputs(request(), [])  # no selection: everything the model makes


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_outputs_round_trip(binary: bool) -> None:
    words = np.array([["un", "deux"], ["été", ""]], dtype=object)
    result = encode(request(binary_data_output=binary), {"words": words})
    assert result.get_output("words")["datatype"] == "BYTES"
    got = result.as_numpy("words")
    assert got.shape == (2, 2)
    assert [v.decode() if isinstance(v, bytes) else v for v in got.ravel()] == ["un", "deux", "été", ""]


def test_non_utf8_bytes_outputs_must_go_binary() -> None:
    with pytest.raises(V2Error, match="binary_data"):
        encode_infer_response(
            request(), {"raw": np.array([b"\xff"], dtype=object)}, model_name="m", model_version=1
        )


@pytest.mark.parametrize("binary", [True, False])
def test_classification_returns_top_k_value_index_label(binary: bool) -> None:
    outputs = [RequestedOutput("logits", binary_data=binary, classification=2)]
    result = encode(request(outputs), labels=["zero", "one", "two"])
    entry = result.get_output("logits")
    assert entry["datatype"] == "BYTES"
    assert entry["shape"] == [2, 2]
    got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("logits").ravel()]
    assert got == ["2.000000:1:one", "0.500000:0:zero", "3.000000:0:zero", "1.000000:2:two"]


def test_classification_clamps_k_and_works_without_labels() -> None:
    outputs = [RequestedOutput("logits", classification=10)]
    got = encode(request(outputs)).get_output("logits")
    assert got["shape"] == [2, 3]
    assert got["data"][0] == "2.000000:1"


def test_classification_of_a_non_numeric_output_is_refused() -> None:
    req = request([RequestedOutput("words", classification=1)])
    with pytest.raises(V2Error, match="cannot be classified"):
        encode_infer_response(req, {"words": np.array([b"a"], dtype=object)}, model_name="m", model_version=1)


def test_big_endian_outputs_are_sent_little_endian() -> None:
    big = np.array([1.5, -2.0], dtype=">f4")
    result = encode(request(binary_data_output=True), {"x": big})
    np.testing.assert_array_equal(result.as_numpy("x"), [1.5, -2.0])


# -- compression ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("encoding", "pack"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies_inflate(encoding: str, pack: Any) -> None:
    raw = b'{"inputs": []}' * 50
    assert decompress(pack(raw), encoding, max_bytes=10_000) == raw
    assert decompress(compress(raw, encoding), encoding.upper(), max_bytes=10_000) == raw


def test_identity_and_missing_encodings_pass_the_body_through() -> None:
    assert decompress(b"abc", None, max_bytes=1) == b"abc"
    assert decompress(b"abc", "identity", max_bytes=1) == b"abc"


def test_a_body_that_inflates_past_the_limit_is_refused() -> None:
    bomb = gzip.compress(b"\0" * 1_000_000)
    assert len(bomb) < 2_000
    with pytest.raises(PayloadTooLarge, match="more than the limit of 4096 bytes"):
        decompress(bomb, "gzip", max_bytes=4096)


@pytest.mark.parametrize(
    ("raw", "encoding", "message"),
    [
        (b"plain", "gzip", "not valid gzip"),
        (gzip.compress(b"x" * 100)[:-12], "gzip", "truncated"),
        (b"abc", "br", "Content-Encoding 'br' is not supported"),
    ],
)
def test_bad_compressed_bodies_are_refused(raw: bytes, encoding: str, message: str) -> None:
    with pytest.raises(V2Error, match=message):
        decompress(raw, encoding, max_bytes=10_000)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, None),
        ("", None),
        ("gzip", "gzip"),
        ("br, deflate", "deflate"),
        ("deflate;q=0.5, gzip;q=0", "deflate"),
        ("gzip;q=bogus", None),
        ("identity", None),
    ],
)
def test_response_encoding_follows_accept_encoding(header: str | None, chosen: str | None) -> None:
    assert negotiate(header) == chosen
