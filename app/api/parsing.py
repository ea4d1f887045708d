"""Predict request bodies (JSON or multipart/form-data) -> samples and options for the service.

The JSON body is parsed and validated once, from bytes, by pydantic-core; base64 and arrays are
left as they are for :mod:`app.inputs` to decode. A body over 256 KiB is parsed in a worker
thread by :mod:`app.json_arrays` instead, which reads number arrays straight into numpy (no
Python float per number), then validated. Error messages name the field at fault.

Predict takes ``application/json`` (or ``+json``) and ``multipart/form-data`` only (415
otherwise): ``text/plain`` and url-encoded forms are what a page on another site can send
without the browser asking first. A multipart ``text`` must be UTF-8, like JSON and file parts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.api.middleware import UnsupportedMediaType
from app.api.multipart import FilePart, split_form
from app.decode_cost import INLINE_DECODE_BYTES, off_loop
from app.errors import BadRequest, InvalidInput
from app.inputs import RawInput, Sample
from app.json_arrays import load_body
from app.schemas import Instance, Options, PredictRequest
from app.service import PredictOptions

FORM_FIELDS = (
    "image",
    "audio",
    "text",
    "top_k",
    "explain",
    "version",
    "explain_method",
    "min_confidence",
    "abstain_on_conflict",
)
FAST_FORM_BYTES = 1024 * 1024
"""Multipart bodies up to this size are split in memory (:func:`app.api.multipart.split_form`)."""
_LARGE_PARSE = threading.Lock()
MAX_ERRORS = 3


def describe_validation(errors: Sequence[Any]) -> str:
    """pydantic errors -> ``"field.path: what is wrong; ..."`` (the first few)."""
    parts = []
    for err in list(errors)[:MAX_ERRORS]:
        loc = [p for p in err.get("loc", ()) if p not in ("body", "path", "query", "header")]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
        if err.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}")
    more = len(errors) - MAX_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


async def parse_predict(request: Request) -> tuple[list[Sample], PredictOptions, bool]:
    """The samples, the options, and whether the client sent ``instances`` (a list answer).

    Raises:
        BadRequest: empty body, malformed JSON, unreadable multipart, bad text encoding.
        InvalidInput: schema violations (unknown field, wrong type, both b64 and array, ...).
        PayloadTooLarge: the body is over ``max_body_bytes`` (raised while it is read).
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return await _parse_form(request)
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(
            f"content type {media or '(none)'!r} is not accepted: send application/json or "
            "multipart/form-data"
        )
    body = await request.body()
    if not body.strip():
        raise BadRequest("empty request body: send JSON (application/json) or multipart/form-data")
    large = len(body) > INLINE_DECODE_BYTES  # parsing megabytes of JSON arrays would stall the loop
    return await off_loop(not large, _parse_json, body, large)


def _parse_json(body: bytes, large: bool = False) -> tuple[list[Sample], PredictOptions, bool]:
    try:
        if large:
            with _LARGE_PARSE:  # one at a time: threads fighting for the GIL starve the event loop
                req = PredictRequest.model_validate(load_body(body))
        else:
            req = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest(f"malformed JSON: {errors[0]['msg']}") from None
        raise InvalidInput(describe_validation(errors)) from None
    if req.instances is None:
        samples = [_sample(req, "")]
    else:
        samples = [_sample(inst, f"instances[{i}].") for i, inst in enumerate(req.instances)]
    return samples, _options(req.options), req.instances is not None


def _sample(inst: Instance, prefix: str) -> Sample:
    sample: dict[str, RawInput] = {}
    if inst.image is not None:
        image = inst.image
        field = f"{prefix}image"
        sample["image"] = (
            RawInput("b64", image.b64, field)
            if image.b64 is not None
            else RawInput("array", image.array, field)
        )
    if inst.audio is not None:
        audio = inst.audio
        field = f"{prefix}audio"
        sample["audio"] = (
            RawInput("b64", audio.b64, field)
            if audio.b64 is not None
            else RawInput("array", audio.array, field, audio.sample_rate)
        )
    if inst.text is not None:
        sample["text"] = RawInput("text", inst.text, f"{prefix}text")
    return sample


def _options(options: Options) -> PredictOptions:
    return PredictOptions(
        top_k=options.top_k,
        explain=options.explain,
        version=options.version,
        explain_method=options.explain_method,
        min_confidence=options.min_confidence,
        abstain_on_conflict=options.abstain_on_conflict,
    )


async def _parse_form(request: Request) -> tuple[list[Sample], PredictOptions, bool]:
    sample: dict[str, RawInput] = {}
    raw_options: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in await _form_items(request):
        if key in seen:
            raise InvalidInput(f"{key}: given more than once")
        seen.add(key)
        if key not in FORM_FIELDS:
            raise InvalidInput(f"{key}: unknown field; multipart takes {list(FORM_FIELDS)}")
        if key in ("image", "audio"):
            if not isinstance(value, FilePart):
                raise InvalidInput(f"{key}: must be a file part (e.g. curl -F {key}=@file)")
            sample[key] = RawInput("bytes", value.data, key)
        elif key == "text":
            sample["text"] = RawInput("text", _text(value), "text")
        elif isinstance(value, FilePart):
            raise InvalidInput(f"{key}: must be a plain field, not a file")
        else:
            raw_options[key] = value
    try:
        options = Options.model_validate(raw_options)
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc.errors(include_url=False))) from None
    return [sample], _options(options), False


async def _form_items(request: Request) -> list[tuple[str, str | FilePart]]:
    """The form's parts in order: split at once when laid out as clients write forms
    (:mod:`app.api.multipart`), else by Starlette's parser (the body is replayed to it).

    Only a body declared at up to ``FAST_FORM_BYTES`` is read whole for the quick split; a
    larger or chunked one is streamed through Starlette's parser, which spools big files to
    disk instead of holding the body and its parts in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= FAST_FORM_BYTES:
        body = await request.body()
        items = split_form(body, request.headers.get("content-type", ""), len(FORM_FIELDS))
        if items is not None:
            return items
    form = await _read_form(request)
    try:
        return [
            (
                key,
                FilePart(value.filename or "", await value.read())
                if isinstance(value, UploadFile)
                else value,
            )
            for key, value in form.multi_items()
        ]
    finally:
        await form.close()


class _StrictMultiPartParser(MultiPartParser):
    """Starlette's parser, except that a field that is not valid in its charset is an error.

    Starlette decodes such a field as Latin-1, so ``text=sept\\xff`` would be accepted.
    """

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                value = part.data.decode(self._charset or "utf-8")
            except (UnicodeDecodeError, LookupError) as exc:
                reason = f"{exc.reason} at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else exc
                raise BadRequest(f"{part.field_name}: the field is not UTF-8 ({reason})") from None
            self.items.append((part.field_name, value))
            return
        super().on_part_end()


async def _read_form(request: Request) -> FormData:
    parser = _StrictMultiPartParser(
        request.headers, request.stream(), max_files=len(FORM_FIELDS), max_fields=len(FORM_FIELDS)
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}") from None


def _text(value: str | FilePart) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"text: the file is not UTF-8 ({exc.reason} at byte {exc.start})") from None
