"""infer(): KServe V2 tensors with the binary tensor extension, checked against the spec and tritonclient.

The fake server below parses requests and writes responses from the protocol text (Triton's
binary data extension), independently of the SDK's own encoder and decoder.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from sdk_fakes import Recorder

from fusion_client import DecodeError, NotFound

HEADER = "Inference-Header-Content-Length"
NUMPY = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
    "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
TENSORS: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([[1, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 127], dtype=np.int8),
    "INT16": np.array([-300, 300], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -1.25, 65504.0], dtype=np.float16),
    "FP32": np.linspace(-1, 1, 16000, dtype=np.float32).reshape(1, 16000),
    "FP64": np.array([[np.pi, -np.e]]),
    "BYTES": np.array([[b"sept", b""], ["\u00e9t\u00e9".encode(), b"7"]], dtype=object),
}
EMPTY = np.zeros((0, 3), dtype=np.float32)
RAW = np.array([b"\x00\xff\x00", b"\x00"], dtype=object)  # not UTF-8: binary mode only


def parse_request(request: httpx.Request) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode a V2 infer request by the spec."""
    body = request.content
    length = int(request.headers.get(HEADER, len(body)))
    header = json.loads(body[:length])
    offset, tensors = length, {}
    for spec in header["inputs"]:
        size = spec.get("parameters", {}).get("binary_data_size")
        if size is None:
            data = spec["data"]
            if spec["datatype"] == "BYTES":
                values = np.array([s.encode() for s in data] or [], dtype=object)
            else:
                values = np.array(data, dtype=NUMPY[spec["datatype"]])
        else:
            raw, offset = body[offset : offset + size], offset + size
            values = (
                unpack_bytes(raw)
                if spec["datatype"] == "BYTES"
                else np.frombuffer(raw, NUMPY[spec["datatype"]])
            )
        tensors[spec["name"]] = values.reshape(spec["shape"])
    assert offset == len(body), "binary data the header does not claim"
    return header, tensors


def unpack_bytes(raw: bytes) -> np.ndarray:
    items, offset = [], 0
    while offset < len(raw):
        (n,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + n])
        offset += 4 + n
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def respond(tensors: dict[str, np.ndarray], datatypes: dict[str, str], binary: bool) -> httpx.Response:
    """A V2 infer response by the spec: JSON data, or a header plus binary blobs."""
    outputs, blobs = [], []
    for name, array in tensors.items():
        spec: dict[str, Any] = {"name": name, "datatype": datatypes[name], "shape": list(array.shape)}
        if not binary:
            flat = array.ravel().tolist()
            spec["data"] = [b.decode() for b in flat] if datatypes[name] == "BYTES" else flat
        else:
            if datatypes[name] == "BYTES":
                blob = b"".join(struct.pack("<I", len(b)) + b for b in array.ravel().tolist())
            else:
                blob = array.astype(NUMPY[datatypes[name]]).tobytes()
            spec["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        outputs.append(spec)
    header = json.dumps({"model_name": "echo", "outputs": outputs}).encode()
    if not binary:
        return httpx.Response(200, content=header, headers={"Content-Type": "application/json"})
    headers = {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}
    return httpx.Response(200, content=header + b"".join(blobs), headers=headers)


def echo(request: httpx.Request) -> httpx.Response:
    """An identity model: every input comes back as an output of the same name."""
    header, tensors = parse_request(request)
    binary = bool(header.get("parameters", {}).get("binary_data_output"))
    return respond(tensors, {s["name"]: s["datatype"] for s in header["inputs"]}, binary)


def assert_same(got: dict[str, np.ndarray], sent: dict[str, np.ndarray], *, writeable: bool = True) -> None:
    assert got.keys() == sent.keys()
    for name, array in sent.items():
        assert got[name].shape == array.shape, name
        if array.dtype == object:
            assert got[name].dtype == object and got[name].tolist() == array.tolist(), name
        else:
            assert got[name].dtype == array.dtype and np.array_equal(got[name], array), name
            assert got[name].flags.writeable or not writeable, name


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(call: Callable[..., Any], binary: bool) -> None:
    tensors = TENSORS | {"empty": EMPTY} | ({"raw": RAW} if binary else {})
    assert_same(call(echo, "infer", "echo", tensors, binary=binary), tensors)


def test_str_elements_are_sent_as_utf8_and_come_back_as_bytes(call: Callable[..., Any]) -> None:
    got = call(echo, "infer", "echo", {"t": np.array(["sept", "\u00e9t\u00e9"])})
    assert got["t"].tolist() == [b"sept", "\u00e9t\u00e9".encode()]


def test_binary_request_is_json_header_then_raw_bytes(call: Callable[..., Any]) -> None:
    recorder = Recorder(echo)
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    mask = np.array([[1, 0, 0]], dtype=np.float32)
    call(recorder, "infer", "late", {"image": image, "mask": mask}, version=2)
    (request,) = recorder.requests
    assert request.url.path == "/v2/models/late/versions/2/infer"
    assert request.headers["Content-Type"] == "application/octet-stream"
    length = int(request.headers[HEADER])
    assert request.content[length:] == image.tobytes() + mask.tobytes()
    assert json.loads(request.content[:length]) == {
        "inputs": [
            {
                "name": "image",
                "shape": [1, 28, 28],
                "datatype": "UINT8",
                "parameters": {"binary_data_size": 784},
            },
            {"name": "mask", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        ],
        "parameters": {"binary_data_output": True},
    }


def test_json_request_carries_flat_row_major_data(call: Callable[..., Any]) -> None:
    recorder = Recorder(echo)
    call(recorder, "infer", "late", {"text": np.arange(6, dtype=np.uint8).reshape(2, 3)}, binary=False)
    (request,) = recorder.requests
    assert request.url.path == "/v2/models/late/infer" and HEADER not in request.headers
    assert json.loads(request.content) == {
        "inputs": [{"name": "text", "shape": [2, 3], "datatype": "UINT8", "data": [0, 1, 2, 3, 4, 5]}]
    }


def test_requested_outputs_and_parameters(call: Callable[..., Any]) -> None:
    recorder = Recorder(echo)
    call(recorder, "infer", "late", {"x": np.ones(2, np.float32)}, outputs=["x"], parameters={"priority": 1})
    header = json.loads(recorder.requests[0].content[: int(recorder.requests[0].headers[HEADER])])
    assert header["outputs"] == [{"name": "x", "parameters": {"binary_data": True}}]
    assert header["parameters"] == {"priority": 1, "binary_data_output": True}


def test_big_endian_and_strided_inputs_are_sent_little_endian_row_major(call: Callable[..., Any]) -> None:
    recorder = Recorder(echo)
    array = np.arange(12, dtype=">i4").reshape(3, 4).T
    got = call(recorder, "infer", "m", {"x": array})
    assert np.array_equal(got["x"], array)
    assert recorder.requests[0].content.endswith(np.ascontiguousarray(array, dtype="<i4").tobytes())


def test_requests_match_tritonclient_byte_for_byte(call: Callable[..., Any]) -> None:
    """tritonclient is the reference client of the binary extension."""
    import tritonclient.http as http
    from tritonclient.http._utils import _get_inference_request

    recorder = Recorder(echo)
    call(recorder, "infer", "m", TENSORS)
    body, length = recorder.requests[0].content, int(recorder.requests[0].headers[HEADER])
    inputs = []
    for name, array in TENSORS.items():
        tensor = http.InferInput(name, list(array.shape), name)
        inputs.append(tensor.set_data_from_numpy(array, binary_data=True))
    reference, ref_length = _get_inference_request(inputs, "", None, 0, False, False, 0, None, None)
    assert body[length:] == reference[ref_length:]
    assert json.loads(body[:length]) == json.loads(reference[:ref_length])


def test_responses_this_suite_serves_decode_identically_in_tritonclient() -> None:
    import tritonclient.http as http

    response = respond(TENSORS, {name: name for name in TENSORS}, binary=True)
    result = http.InferResult.from_response_body(
        response.content, header_length=int(response.headers[HEADER])
    )
    for name, array in TENSORS.items():
        assert result.as_numpy(name).tolist() == array.tolist(), name


def binary_body(header: dict[str, Any], tail: bytes, length: int | None = None) -> httpx.Response:
    head = json.dumps(header).encode()
    return httpx.Response(
        200, content=head + tail, headers={HEADER: str(len(head) if length is None else length)}
    )


FP32_2 = {"name": "y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
FP32_6B = FP32_2 | {"parameters": {"binary_data_size": 6}}
BF16 = {"name": "y", "datatype": "BF16", "shape": [1], "data": [1]}


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (binary_body({"outputs": []}, b"", length=999), "outside the body"),
        (binary_body({"outputs": [FP32_2]}, b"\0" * 4), "body ends"),
        (binary_body({"outputs": []}, b"xyz"), "3 bytes no output claims"),
        (binary_body({"outputs": [FP32_6B]}, b"\0" * 6), "whole number"),
        (binary_body({"outputs": [{**FP32_2, "datatype": "BYTES"}]}, b"\x09\0\0\0abcd"), "past the end"),
        (httpx.Response(200, json={"outputs": [BF16]}), "BF16"),
        (httpx.Response(200, json={"model_name": "m"}), "outputs"),
        (httpx.Response(200, content=b"not json"), "JSONDecodeError"),
        (httpx.Response(200, json={"outputs": [{**FP32_2, "parameters": {}, "data": [1, 2, 3]}]}), "reshape"),
    ],
)  # fmt: skip
def test_malformed_infer_responses_raise_decode_error(
    call: Callable[..., Any], response: httpx.Response, match: str
) -> None:
    with pytest.raises(DecodeError, match=match):
        call(Recorder(response), "infer", "m", {"x": np.ones(1, np.float32)})


def test_infer_errors_carry_the_server_message(call: Callable[..., Any]) -> None:
    with pytest.raises(NotFound, match="unknown model 'nope'"):
        call(
            Recorder(httpx.Response(404, json={"error": "unknown model 'nope'"})),
            "infer",
            "nope",
            {"x": np.ones(1)},
        )


@pytest.mark.parametrize(
    ("inputs", "kwargs", "error", "match"),
    [
        ({}, {}, ValueError, "at least one input"),
        ({"x": np.ones(2, dtype=np.complex64)}, {}, TypeError, "no V2 datatype"),
        (
            {"x": np.array([b"\xff"], dtype=object)},
            {"binary": False},
            ValueError,
            "not UTF-8 need binary=True",
        ),
        ({"x": np.array([1, "a"], dtype=object)}, {}, TypeError, "bytes or str elements"),
    ],
)
def test_unsendable_inputs_fail_locally(
    call: Callable[..., Any],
    inputs: dict[str, Any],
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    recorder = Recorder(echo)
    with pytest.raises(error, match=match):
        call(recorder, "infer", "m", inputs, **kwargs)
    assert recorder.requests == []


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_servers_v2_codec_reads_what_the_sdk_sends_and_vice_versa(binary: bool) -> None:
    """Contract with app/v2: the server parses the SDK's request; the SDK parses the server's answer."""
    from app.v2 import codec, response
    from fusion_client._v2 import decode_response, encode_request

    tensors = TENSORS | {"empty": EMPTY} | ({"raw": RAW} if binary else {})
    body, headers = encode_request(tensors, binary=binary, outputs=["FP16", "BYTES", "empty"])
    request = codec.parse_infer_request(body, headers.get(HEADER))
    assert_same(request.inputs, tensors, writeable=False)  # the server's arrays are its business
    answer, answer_headers = response.encode_infer_response(
        request, request.inputs, model_name="m", model_version=1
    )
    assert_same(
        decode_response(answer, answer_headers.get(HEADER)),
        {k: tensors[k] for k in ("FP16", "BYTES", "empty")},
    )
