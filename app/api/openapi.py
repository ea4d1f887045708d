"""OpenAPI details the route decorators cannot express: the predict body (JSON or multipart).

The predict route reads its body itself (one parse, two content types), so its request schema
and examples are added here, when ``/openapi.json`` is first built. The examples carry a real
PNG and WAV made on the spot, so they work when pasted (for a fusion model such as ``late``).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI
from PIL import Image, ImageDraw
from pydantic.json_schema import models_json_schema

from app.schemas import PredictRequest

PREDICT_PATH = "/v1/models/{name}/predict"
REF = "#/components/schemas/{model}"


def example_png() -> bytes:
    """A 28x28 grayscale PNG of a hand-drawn-looking 7."""
    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line([(6, 6), (21, 6), (12, 23)], fill=255, width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def example_wav(seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A short 8-bit WAV tone: small enough to paste, decoded and resampled like any clip."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) * np.hanning(t.size)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_U8")
    return buf.getvalue()


def predict_examples() -> dict[str, dict[str, Any]]:
    """Request bodies for ``POST /v1/models/{name}/predict``, each valid for a fusion model."""
    png = base64.b64encode(example_png()).decode()
    wav = base64.b64encode(example_wav()).decode()
    return {
        "text": {"summary": "Text only", "value": {"text": "sept", "options": {"top_k": 3}}},
        "all": {
            "summary": "Image + audio + text, base64 files, with explanation",
            "value": {
                "image": {"b64": png},
                "audio": {"b64": wav},
                "text": "seven",
                "options": {"explain": True},
            },
        },
        "arrays": {
            "summary": "Arrays instead of files",
            "value": {
                "image": {"array": [[0, 255, 255, 0], [0, 0, 255, 0], [0, 255, 0, 0], [0, 255, 0, 0]]},
                "audio": {"array": [0.0, 0.3, 0.5, 0.3, 0.0, -0.3, -0.5, -0.3], "sample_rate": 8000},
            },
        },
        "instances": {
            "summary": "Several samples in one call",
            "value": {
                "instances": [{"text": "one"}, {"image": {"b64": png}, "text": "drei"}],
                "options": {"top_k": 1},
            },
        },
    }


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` add the predict body (JSON and multipart) and its examples."""

    build = app.openapi  # FastAPI's own builder; it caches its result on app.openapi_schema
    patched = False

    def openapi() -> dict[str, Any]:
        nonlocal patched
        schema = build()
        if not patched:
            _, defs = models_json_schema([(PredictRequest, "validation")], ref_template=REF)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            operation = schema.get("paths", {}).get(PREDICT_PATH, {}).get("post")
            if operation is not None:
                operation["requestBody"] = _predict_body()
            patched = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _predict_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": REF.format(model="PredictRequest")},
                "examples": predict_examples(),
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "PNG, JPEG, ... file"},
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "WAV, FLAC or OGG file",
                        },
                        "text": {"type": "string"},
                        "top_k": {"type": "integer", "minimum": 1, "default": 3},
                        "explain": {"type": "boolean", "default": False},
                        "version": {"type": "integer", "minimum": 1},
                    },
                }
            },
        },
    }
