"""V2 tensors -> model inputs (app.v2.adapt, then the one validator): omitted modalities, the mask,
text as BYTES, the row limit, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from app.batching import Tensors
from app.checks import check_inputs
from app.errors import FusionError, PayloadTooLarge
from app.manifest import Manifest
from app.media import encode_text
from app.v2 import to_model_inputs, v2_datatype
from app.v2.adapt import count_rows

SPECS = {
    "image": {"name": "image", "dtype": "uint8", "shape": [-1, 28, 28]},
    "audio": {"name": "audio", "dtype": "float32", "shape": [-1, 16000]},
    "text": {"name": "text", "dtype": "uint8", "shape": [-1, 64]},
    "mask": {"name": "mask", "dtype": "float32", "shape": [-1, 3]},
}


def manifest(name: str, fusion: str, inputs: list[str]) -> Manifest:
    return Manifest.model_validate(
        {
            "name": name,
            "version": 1,
            "fusion": fusion,
            "modalities": [m for m in inputs if m != "mask"],
            "inputs": [SPECS[n] for n in inputs],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
            "labels": [str(i) for i in range(10)],
        }
    )


FUSION = manifest("late", "late", ["image", "audio", "text", "mask"])
TEXT_ONLY = manifest("text_only", "unimodal", ["text"])


def image(rows: int = 1) -> np.ndarray:
    return np.full((rows, 28, 28), 7, dtype=np.uint8)


def audio(rows: int = 1) -> np.ndarray:
    return np.full((rows, 16000), 0.25, dtype=np.float32)


def words(*texts: str) -> np.ndarray:
    return np.array([t.encode() for t in texts], dtype=object)


def adapt(inputs: dict[str, np.ndarray], model: Manifest = FUSION, max_text_chars: int = 100) -> Tensors:
    """What the service does with a parsed V2 request: adapt, then validate."""
    datatypes = {name: v2_datatype(a.dtype) for name, a in inputs.items()}
    return check_inputs(model, to_model_inputs(model, inputs, datatypes, max_text_chars=max_text_chars))


def refused(inputs: dict[str, np.ndarray], model: Manifest = FUSION) -> str:
    with pytest.raises(FusionError) as info:  # V2Error from adapt, InvalidInput from the validator
        adapt(inputs, model)
    return info.value.message


def test_all_modalities_pass_through_with_a_derived_mask() -> None:
    text = np.stack([encode_text("sept"), encode_text("two")])
    out = adapt({"image": image(2), "audio": audio(2), "text": text})
    assert list(out) == ["image", "audio", "text", "mask"]  # the graph's order
    assert out["image"].shape == (2, 28, 28)
    np.testing.assert_array_equal(out["text"], text)
    np.testing.assert_array_equal(out["mask"], np.ones((2, 3), dtype=np.float32))
    assert out["mask"].dtype == np.float32


def test_an_omitted_modality_is_zeros_with_mask_zero() -> None:
    out = adapt({"image": image(3), "text": np.zeros((3, 64), dtype=np.uint8) + 65})
    assert out["audio"].shape == (3, 16000)
    assert out["audio"].dtype == np.float32
    assert not out["audio"].any()
    np.testing.assert_array_equal(out["mask"], [[1, 0, 1]] * 3)


def test_text_as_bytes_is_encoded_like_the_friendly_api() -> None:
    for text in (words("sept", "élan"), words("sept", "élan").reshape(2, 1)):
        out = adapt({"text": text})
        np.testing.assert_array_equal(out["text"], np.stack([encode_text("sept"), encode_text("élan")]))
        np.testing.assert_array_equal(out["mask"], [[0, 0, 1]] * 2)
        assert out["image"].shape == (2, 28, 28)


def test_an_explicit_mask_may_switch_a_sent_modality_off() -> None:
    mask = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.float32)
    out = adapt({"image": image(2), "audio": audio(2), "mask": mask})
    np.testing.assert_array_equal(out["mask"], mask)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ([[1, 0, 0.5]], "mask values must be 0 (missing) or 1 (present)"),
        ([[1, 0, 1]], "mask row 0 marks text present but no text input was sent"),
        ([[0, 0, 0]], "mask row 0 marks no modality present"),
        ([[1, 0]], "input 'mask' has shape [1, 2]; the model wants [-1, 3]"),
    ],
)
def test_a_mask_that_contradicts_the_inputs_is_refused(mask: list[list[float]], message: str) -> None:
    assert message in refused({"image": image(), "mask": np.array(mask, dtype=np.float32)})


def test_unimodal_models_take_only_their_modality() -> None:
    out = adapt({"text": words("neuf")}, TEXT_ONLY)
    assert list(out) == ["text"]
    np.testing.assert_array_equal(out["text"], [encode_text("neuf")])
    assert "has no input 'mask'; its inputs are ['text']" in refused(
        {"text": words("neuf"), "mask": np.ones((1, 3), np.float32)}, TEXT_ONLY
    )
    assert "has no input 'image'" in refused({"image": image()}, TEXT_ONLY)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"mask": np.ones((1, 3), np.float32)}, "send at least one modality input"),
        ({"image": image(), "depth": image()}, "model 'late' has no input 'depth'"),
        ({"audio": audio().astype(np.float64)}, "input 'audio' has dtype float64; the model wants float32"),
        ({"text": np.zeros((1, 64), np.float32)}, "input 'text' has dtype float32; the model wants uint8"),
        ({"image": np.zeros((1, 28, 27), np.uint8)}, "input 'image' has shape [1, 28, 27]"),
        ({"image": np.zeros((28, 28), np.uint8)}, "input 'image' has shape [28, 28]"),
        ({"image": np.zeros((), np.uint8)}, "input 'image' has shape []"),
        ({"image": image(2), "audio": audio(3)}, "inputs have different batch sizes"),
        ({"image": image(0)}, "has no rows"),
        ({"audio": np.full((1, 16000), np.nan, np.float32)}, "input 'audio' holds NaN or infinite values"),
        ({"image": image(), "mask": np.array([[1, 0, np.inf]], np.float32)}, "mask values must be 0"),
        ({"image": image(), "mask": np.ones((1, 3), np.float64)}, "input 'mask' has dtype float64"),
        ({"text": words("a", "b").reshape(1, 2)}, "must have shape [B] or [B, 1]"),
        ({"text": np.array([b"\xff"], dtype=object)}, "input 'text' row 0 is not valid UTF-8"),
        ({"text": words("   ")}, "input 'text' row 0 is empty"),
        ({"text": words("a\x00b")}, "must not contain NUL"),
    ],
)
def test_inputs_the_model_cannot_take_are_refused(inputs: dict[str, np.ndarray], message: str) -> None:
    assert message in refused(inputs)


def test_text_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="row 0 has 11 characters"):
        adapt({"text": words("x" * 11)}, max_text_chars=10)


def test_rows_are_the_largest_dim_0() -> None:
    assert count_rows({"text": words("a", "b"), "image": image(3)}) == 3
    assert count_rows({"image": np.zeros((), np.uint8)}) == 0  # a scalar has none; the validator says so
