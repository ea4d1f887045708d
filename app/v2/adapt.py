"""V2 request tensors -> the full set of model inputs, before the one validator checks them.

What a tensor client may send beyond the graph's exact inputs:

- ``text`` as ``BYTES`` (shape ``[B]`` or ``[B, 1]``, one UTF-8 string per row), encoded with
  :func:`app.media.encode_text` exactly as the friendly API does; or as ``UINT8`` ``[B, 64]``.
- any modality left out: it is filled with zeros and its ``mask`` column is 0. ``mask`` itself
  may be left out (derived from which modalities are present) or sent explicitly; an explicit
  mask may switch a sent modality off but may not claim one that was not sent.

Dtypes, shapes and batch sizes are not checked here but by :func:`app.checks.check_inputs`, the
validator ``/v1`` uses too; this module only refuses what it cannot adapt.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from app.errors import PayloadTooLarge
from app.manifest import Manifest
from app.media import MODALITIES, MediaError, MediaTooLarge, encode_text
from app.v2.datatypes import BYTES
from app.v2.errors import V2Error


def count_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """The batch size the request declares: the largest dim 0 of its inputs (0 if none has one)."""
    return max((a.shape[0] for a in inputs.values() if a.ndim), default=0)


def to_model_inputs(
    manifest: Manifest,
    inputs: Mapping[str, np.ndarray],
    datatypes: Mapping[str, str],
    *,
    max_text_chars: int,
) -> dict[str, np.ndarray]:
    """Every input the graph takes, in manifest order: omitted ones filled, text encoded.

    Args:
        manifest: the card of the model version that will run.
        inputs: the parsed request tensors by name.
        datatypes: the V2 datatype each input was declared with.
        max_text_chars: the server's text limit, applied to ``BYTES`` text.

    Raises:
        V2Error: unknown input, no modality, text that is not one string per row, a mask that
            contradicts the inputs (400).
        PayloadTooLarge: a ``BYTES`` text over ``max_text_chars`` (413).
    """
    specs = {t.name: t for t in manifest.inputs}
    unknown = [n for n in inputs if n not in specs]
    if unknown:
        raise V2Error(f"model {manifest.name!r} has no input {unknown[0]!r}; its inputs are {list(specs)}")
    present = [m for m in manifest.modalities if m in inputs]
    if not present:
        raise V2Error(f"send at least one modality input: one of {list(manifest.modalities)}")
    rows = count_rows(inputs)  # bounded: the service has the codec refuse more than max_instances
    given = dict(inputs)
    if datatypes.get("text") == BYTES:
        given["text"] = _text_from_bytes(given["text"], manifest, max_text_chars)
    out: dict[str, np.ndarray] = {}
    for spec in manifest.inputs:
        if spec.name == "mask":
            derived = np.array([[m in present for m in MODALITIES]] * rows, dtype=np.float32)
            out["mask"] = _check_mask(given["mask"], derived) if "mask" in given else derived
        elif spec.name in given:
            out[spec.name] = given[spec.name]
        else:
            out[spec.name] = np.zeros((rows, *spec.shape[1:]), dtype=np.dtype(spec.dtype))
    return out


def _text_from_bytes(array: np.ndarray, manifest: Manifest, max_chars: int) -> np.ndarray:
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] != 1):
        raise V2Error(
            "input 'text' as BYTES must have shape [B] or [B, 1] (one string per row), "
            f"got {list(array.shape)}"
        )
    rows = []
    for i, element in enumerate(array.ravel()):
        try:
            text = bytes(element).decode("utf-8")
            rows.append(encode_text(text, max_bytes=manifest.decode.text_bytes, max_chars=max_chars))
        except UnicodeDecodeError:
            raise V2Error(f"input 'text' row {i} is not valid UTF-8") from None
        except MediaTooLarge as exc:
            raise PayloadTooLarge(f"input 'text' row {i} {exc.reason}") from None
        except MediaError as exc:
            raise V2Error(f"input 'text' row {i} {exc.reason}") from None
    return np.stack(rows) if rows else np.zeros((0, manifest.decode.text_bytes), dtype=np.uint8)


def _check_mask(mask: np.ndarray, derived: np.ndarray) -> np.ndarray:
    """An explicit mask may switch sent modalities off, never claim unsent ones.

    A mask of the wrong shape or dtype is left as it is, for the validator to refuse by name.
    """
    if mask.shape != derived.shape or mask.dtype != derived.dtype:
        return mask
    if not ((mask == 0) | (mask == 1)).all():  # np.isin costs ~10x more on a small mask
        raise V2Error("mask values must be 0 (missing) or 1 (present)")
    claimed = (mask == 1) & (derived == 0)
    if claimed.any():
        row, col = (int(i) for i in np.argwhere(claimed)[0])
        modality = MODALITIES[col]
        raise V2Error(f"mask row {row} marks {modality} present but no {modality} input was sent")
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise V2Error(f"mask row {int(empty[0])} marks no modality present; each row needs at least one")
    return mask
