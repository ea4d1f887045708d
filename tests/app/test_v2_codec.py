"""Parsing V2 inference requests (app.v2.codec, app.v2.datatypes), JSON and binary, and every refusal."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import serialize_byte_tensor

from app.errors import BadRequest, PayloadTooLarge
from app.v2 import DATATYPES, V2Error, numpy_dtype, parse_infer_request, v2_datatype
from app.v2.datatypes import deserialize_bytes, serialize_bytes


def tensor(name: str, shape: list[int], datatype: str, data: Any = None, **params: Any) -> dict[str, Any]:
    """One entry of ``inputs``; ``data`` is left out when None."""
    entry: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
    if data is not None:
        entry["data"] = data
    if params:
        entry["parameters"] = params
    return entry


ONE = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def parse_error(raw: bytes, header_length: str | None = None) -> str:
    with pytest.raises(V2Error) as info:
        parse_infer_request(raw, header_length)
    return info.value.message


def sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A deterministic array of ``datatype`` covering its range a little."""
    count = int(np.prod(shape))
    if datatype == "BOOL":
        return (np.arange(count) % 3 == 0).reshape(shape)
    if datatype == "BYTES":
        return np.array([f"é{i}".encode() for i in range(count)], dtype=object).reshape(shape)
    dtype = numpy_dtype(datatype)
    if dtype.kind == "f":
        return (np.arange(count) * 3 / 7 - 1).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    extremes = [int(info.min), int(info.max), *range(count)][:count]  # the range's ends included
    return np.array(extremes, dtype=dtype).reshape(shape)


# -- datatypes ------------------------------------------------------------------------------------
def test_datatype_names_round_trip_through_numpy() -> None:
    for datatype in DATATYPES:
        assert v2_datatype(numpy_dtype(datatype)) == datatype
    assert v2_datatype("uint8") == "UINT8"
    assert v2_datatype("float32") == "FP32"
    with pytest.raises(KeyError):
        numpy_dtype("BF16")
    with pytest.raises(KeyError):
        v2_datatype(np.complex64)


def test_bytes_serialisation_matches_tritonclient() -> None:
    elements = [b"", b"abc", "été".encode()]
    ours = serialize_bytes(elements)
    assert ours == serialize_byte_tensor(np.array(elements, dtype=object)).item()
    assert deserialize_bytes(ours, 3) == elements


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"\x01\x00", 1, "cut off"),
        (struct.pack("<I", 9) + b"abc", 1, "claims 9 bytes"),
        (serialize_bytes([b"a", b"b"]), 1, "more than"),
        (serialize_bytes([b"a"]), 2, "holds 1"),
    ],
)
def test_bytes_deserialisation_refuses_bad_prefixes(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deserialize_bytes(raw, count)


# -- JSON data ------------------------------------------------------------------------------------
@pytest.mark.parametrize("datatype", DATATYPES)
def test_json_data_flat_and_nested_parse_to_the_declared_shape(datatype: str) -> None:
    want = sample(datatype, (2, 3))
    flat = [v.decode() if isinstance(v, bytes) else v for v in want.ravel().tolist()]
    nested = np.array(flat, dtype=object).reshape(2, 3).tolist()
    for data in (flat, nested):
        got = parse_infer_request(body(tensor("x", [2, 3], datatype, data))).inputs["x"]
        assert got.shape == (2, 3)
        assert got.dtype == numpy_dtype(datatype)
        np.testing.assert_array_equal(got, want)


def test_request_fields_are_kept_and_codec_parameters_consumed() -> None:
    raw = body(
        tensor("a", [1], "FP32", [0.5]),
        id="req-7",
        parameters={"binary_data_output": True, "priority": 2, "trace": "on"},
        outputs=[{"name": "logits", "parameters": {"binary_data": False, "classification": 3}}],
    )
    request = parse_infer_request(raw)
    assert request.id == "req-7"
    assert request.parameters == {"priority": 2, "trace": "on"}
    assert request.binary_data_output is True
    assert request.datatypes == {"a": "FP32"}
    assert request.outputs is not None
    (out,) = request.outputs
    assert (out.name, out.binary_data, out.classification) == ("logits", False, 3)
    assert request.wants_binary(out) is False


def test_zero_sized_tensor_is_accepted_by_the_codec() -> None:
    got = parse_infer_request(body(tensor("x", [0, 28], "UINT8", []))).inputs["x"]
    assert got.shape == (0, 28)
    assert got.dtype == np.uint8


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (tensor("x", [3], "FP32", [1.0, 2.0]), "data has 2 elements; shape [3] needs 3"),
        (tensor("x", [2, 2], "FP32", [[1.0, 2.0], [3.0]]), "not a rectangular list"),
        (tensor("x", [4], "FP32", [[1.0, 2.0], [3.0, 4.0]]), "nested data has shape [2, 2]"),
        (tensor("x", [2], "FP32", [1.0, "a"]), "FP32 data must hold numbers"),
        (tensor("x", [2], "FP32", [True, False]), "FP32 data must hold numbers"),
        (tensor("x", [2], "UINT8", [1.5, 2]), "UINT8 data must hold integers"),
        (tensor("x", [2], "UINT8", [0, 256]), "values 0..256 do not fit UINT8 (0..255)"),
        (tensor("x", [1], "INT8", [-129]), "do not fit INT8"),
        (tensor("x", [1], "INT64", [2**70]), "do not fit INT64"),
        (tensor("x", [2], "UINT64", [2**64 - 1, 0.5]), "UINT64 data must hold integers"),
        (tensor("x", [2], "UINT64", [2**64, 1]), "do not fit UINT64"),
        (tensor("x", [2], "BOOL", [1, 0]), "BOOL data must be true/false"),
        (tensor("x", [1], "FP32", 1.0), "data must be a list"),
        (tensor("x", [1], "FP32", [None]), "FP32 data must hold numbers"),
        (tensor("x", [2], "BYTES", ["a", 1]), "BYTES data must hold strings, got int"),
        (tensor("x", [2], "BYTES", ["a"]), "data has 1 elements; shape [2] needs 2"),
        (tensor("x", [2, 1], "BYTES", [["a", "b"]]), "nested data does not match the declared shape [2, 1]"),
        (tensor("x", [1], "BYTES", ["\ud800"]), "not encodable as UTF-8"),
    ],
)
def test_json_data_that_disagrees_with_shape_or_datatype_is_refused(
    entry: dict[str, Any], message: str
) -> None:
    assert message in parse_error(body(entry))


# -- the request's structure ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b"{}", "inputs must be a non-empty list"),
        (body(), "inputs must be a non-empty list"),
        (body(ONE, tensor("x", [1], "FP32", [2.0])), "input 'x' is given twice"),
        (body("image"), "inputs[0] must be an object"),  # type: ignore[arg-type]
        (body({"shape": [1], "datatype": "FP32", "data": [1]}), "inputs[0] needs a non-empty string name"),
        (body(tensor("x", [-1], "FP32", [1.0])), "shape must be a list of non-negative integers"),
        (body(tensor("x", [1.5], "FP32", [1.0])), "shape must be a list of non-negative integers"),  # type: ignore[list-item]
        (body(tensor("x", [True], "FP32", [1.0])), "shape must be a list of non-negative integers"),
        (body(tensor("x", [1] * 33, "FP32", [1.0])), "shape must be a list of non-negative integers"),
        (body(tensor("x", [1 << 20, 1 << 20], "FP32", [1.0])), "more than the limit"),
        (body(tensor("x", [0, 1 << 63], "FP32", [])), "over the limit"),  # no element, still refused
        (body(tensor("x", [0, 1 << 29], "BYTES", [])), "over the limit"),
        (body(tensor("x", [0, *[1 << 20] * 3], "FP32", [])), "over the limit"),
        (body(tensor("x", [1], "BF16", [1.0])), "datatype 'BF16' is not one of"),
        (body(tensor("x", [1], "float32", [1.0])), "datatype 'float32' is not one of"),
        (body(tensor("x", [1], "FP32")), "neither data nor parameters.binary_data_size"),
        (body(tensor("x", [1], "FP32", [1.0], shared_memory_region="r")), "shared memory"),
        (body(ONE, id=5), "id must be a string"),
        (body(ONE, parameters=[1]), "request parameters must be a JSON object"),
        (body(ONE, parameters={"binary_data_output": 1}), "binary_data_output"),
        (body(ONE, outputs={"name": "y"}), "outputs must be a list"),
        (body(ONE, outputs=[{"name": ""}]), "outputs[0] needs a non-empty"),
        (body(ONE, outputs=[{"name": "y"}, {"name": "y"}]), "asked for twice"),
        (
            body(
                tensor("x", [1], "FP32", [1.0]), outputs=[{"name": "y", "parameters": {"binary_data": "yes"}}]
            ),
            "binary_data must be true or false",
        ),
        (
            body(
                tensor("x", [1], "FP32", [1.0]), outputs=[{"name": "y", "parameters": {"classification": -1}}]
            ),
            "classification must be a non-negative integer",
        ),
    ],
)
def test_malformed_requests_are_refused_with_the_reason(raw: bytes, message: str) -> None:
    assert message in parse_error(raw)


def test_the_error_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        parse_infer_request(b"nope")
    assert info.value.status_code == 400


def test_rows_over_the_limit_are_refused_from_the_shape_before_the_data_is_read() -> None:
    many = body(tensor("t", [20_000], "BYTES", ["x"] * 20_000))  # 100 KB; 1.28 GB once filled in
    with pytest.raises(PayloadTooLarge, match="input 't' has 20000 rows .* more than the limit of 64"):
        parse_infer_request(many, max_rows=64)
    not_read = body(tensor("i", [65, 1], "UINT8", "never looked at"))
    with pytest.raises(PayloadTooLarge, match="65 rows"):
        parse_infer_request(not_read, max_rows=64)
    assert (
        parse_infer_request(body(tensor("t", [64], "BYTES", ["x"] * 64)), max_rows=64).inputs["t"].size == 64
    )
    assert parse_infer_request(many).inputs["t"].size == 20_000  # no limit unless asked


def test_max_elements_is_configurable() -> None:
    raw = body(tensor("x", [2, 3], "FP32", [0.0] * 6))
    with pytest.raises(V2Error, match="6 elements, more than the limit of 5"):
        parse_infer_request(raw, max_elements=5)


# -- binary data ----------------------------------------------------------------------------------
def triton_body(inputs: list[triton.InferInput], **kwargs: Any) -> tuple[bytes, str | None]:
    """The exact bytes tritonclient would POST, and its Inference-Header-Content-Length."""
    raw, json_size = triton.InferenceServerClient.generate_request_body(inputs, **kwargs)
    return raw, None if json_size is None else str(json_size)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_tritonclient_requests_round_trip_for_every_datatype(datatype: str, binary: bool) -> None:
    want = sample(datatype, (2, 5))
    first = triton.InferInput("first", [2, 5], datatype).set_data_from_numpy(want, binary_data=binary)
    ones = np.ones(4, dtype=np.float32)
    second = triton.InferInput("second", [4], "FP32").set_data_from_numpy(ones, binary_data=binary)
    raw, header = triton_body([first, second], request_id="r1", parameters={"k": "v"})
    assert (header is not None) == binary
    request = parse_infer_request(raw, header)
    np.testing.assert_array_equal(request.inputs["first"], want)
    np.testing.assert_array_equal(request.inputs["second"], ones)
    assert request.inputs["first"].dtype == numpy_dtype(datatype)
    assert request.id == "r1"
    assert request.parameters == {"k": "v"}
    assert request.binary_data_output is True  # tritonclient asks for binary outputs when none named
    assert request.outputs is None


def test_binary_and_json_inputs_mix_in_one_request() -> None:
    audio = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    inputs = [
        triton.InferInput("text", [1], "BYTES").set_data_from_numpy(np.array(["sept"], dtype=object), False),
        triton.InferInput("audio", [1, 8], "FP32").set_data_from_numpy(audio),
        triton.InferInput("image", [1, 2], "UINT8").set_data_from_numpy(np.array([[0, 255]], np.uint8)),
    ]
    outputs = [triton.InferRequestedOutput("logits", binary_data=False)]
    raw, header = triton_body(inputs, outputs=outputs)
    request = parse_infer_request(raw, header)
    assert request.inputs["text"].tolist() == [b"sept"]
    np.testing.assert_array_equal(request.inputs["audio"], audio)
    np.testing.assert_array_equal(request.inputs["image"], [[0, 255]])
    assert request.binary_data_output is False
    assert request.outputs is not None and request.outputs[0].binary_data is False


def binary_request(entries: list[dict[str, Any]], section: bytes) -> tuple[bytes, str]:
    header = body(*entries)
    return header + section, str(len(header))


@pytest.mark.parametrize(
    ("entries", "section", "message"),
    [
        ([tensor("x", [3], "FP32", binary_data_size=8)], b"\0" * 8, "needs 12 bytes (3 x 4)"),
        ([tensor("x", [2], "FP32", binary_data_size=8)], b"\0" * 12, "add up to 8"),
        ([tensor("x", [2], "FP32", binary_data_size=8)], b"\0" * 4, "only 4 bytes of binary data"),
        ([tensor("x", [1], "FP32", [1.0])], b"\0" * 4, "binary section has 4 bytes"),
        ([tensor("x", [1], "FP32", [1.0], binary_data_size=4)], b"\0" * 4, "both data and"),
        ([tensor("x", [1], "FP32", binary_data_size=-4)], b"", "binary_data_size must be a non-negative"),
        ([tensor("x", [1], "FP32", binary_data_size="4")], b"\0" * 4, "binary_data_size must be"),
        ([tensor("x", [2], "BOOL", binary_data_size=2)], b"\x01\x02", "BOOL bytes must be 0 or 1"),
        ([tensor("x", [2], "BYTES", binary_data_size=5)], serialize_bytes([b"a"]), "holds 1 length-prefixed"),
        ([tensor("x", [1], "BYTES", binary_data_size=6)], b"\x09\0\0\0ab", "claims 9 bytes"),
    ],
)
def test_binary_sections_that_do_not_add_up_are_refused(
    entries: list[dict[str, Any]], section: bytes, message: str
) -> None:
    assert message in parse_error(*binary_request(entries, section))


def test_binary_inputs_take_consecutive_slices_in_input_order() -> None:
    a, b = np.arange(3, dtype=np.int32), np.array([7], dtype=np.uint8)
    entries = [tensor("a", [3], "INT32", binary_data_size=12), tensor("b", [1], "UINT8", binary_data_size=1)]
    request = parse_infer_request(*binary_request(entries, a.tobytes() + b.tobytes()))
    np.testing.assert_array_equal(request.inputs["a"], a)
    np.testing.assert_array_equal(request.inputs["b"], b)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("abc", "must be a whole number"),
        ("-3", "must be a whole number"),
        ("\u00b2", "must be a whole number"),  # str.isdigit() says yes, int() says no
        ("\u0661\u0662", "must be a whole number"),  # Arabic-Indic digits: int() would take them
        ("0", "it must count the JSON header"),
        ("100000", "it must count the JSON header"),
    ],
)
def test_a_bad_header_length_is_refused(header: str, message: str) -> None:
    raw, _ = binary_request([tensor("x", [1], "FP32", binary_data_size=4)], b"\0" * 4)
    assert message in parse_error(raw, header)


def test_binary_data_size_without_the_header_is_refused() -> None:
    raw = body(tensor("x", [1], "FP32", binary_data_size=4))
    assert "no Inference-Header-Content-Length" in parse_error(raw)


def test_header_length_covering_the_whole_body_means_no_binary_section() -> None:
    raw = body(tensor("x", [1], "FP32", [2.0]))
    assert parse_infer_request(raw, f" {len(raw)} ").inputs["x"].tolist() == [2.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1.0, "1.5"], "FP32 data must hold numbers"),  # a numeric string is still a string
        ([1.0, None], "FP32 data must hold numbers"),
        ([1.0, [2.0]], "not a rectangular list of numbers"),
    ],
)
def test_flat_float_data_takes_only_numbers(data: list[Any], message: str) -> None:
    entry = {"name": "x", "shape": [2], "datatype": "FP32", "data": data}
    assert message in parse_error(body(entry))


def test_flat_float_data_converts_like_numpy() -> None:
    data = [0.1, -0.0, 1e39, 2**70, 3, 1.5]
    entry = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": data}
    parsed = parse_infer_request(body(entry)).inputs["x"]
    with np.errstate(over="ignore"):
        expected = np.asarray(data, dtype=np.float64).astype(np.float32).reshape(2, 3)
    np.testing.assert_array_equal(parsed, expected)
