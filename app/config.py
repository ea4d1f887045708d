"""Server settings: environment variables with the ``FUSION_`` prefix, validated at start.

Every field is documented here and in ``docs/serving.md``. A wrong value stops the server at
start with :class:`~app.errors.ConfigError`, whose message names the variable and what to set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.contract import MAX_AUDIO_SECONDS, MAX_IMAGE_PIXELS, MAX_TEXT_CHARS
from app.errors import ConfigError

ENV_PREFIX = "FUSION_"
PROVIDER_ALIASES = ("auto", "cpu", "cuda")
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
ORIGIN_RE = re.compile(r"^https?://[^/\s:]+(:\d{1,5})?$")


class Settings(BaseSettings):
    """Everything the server can be told from the environment (``FUSION_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    models_dir: Path = Field(
        default=Path("models"),
        description="Model repository: a directory holding <name>/<version>/{model.onnx,manifest.json}.",
    )
    providers: str = Field(
        default="auto",
        description="onnxruntime execution providers: 'auto' (CUDA when a session really starts on it, "
        "else CPU), 'cpu', 'cuda', or a comma-separated list such as "
        "'CUDAExecutionProvider,CPUExecutionProvider'.",
    )
    intra_op_threads: int = Field(
        default=1, ge=0, description="Threads inside one operator (0 = onnxruntime's default, one per core)."
    )
    inter_op_threads: int = Field(
        default=1, ge=0, description="Threads running independent operators (0 = onnxruntime's default)."
    )
    host: str = Field(
        default="127.0.0.1", min_length=1, description="Interface to listen on ('0.0.0.0' for all)."
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on (0 = any free port).")
    log_level: LogLevel = Field(default="info", description="critical, error, warning, info or debug.")
    access_log: bool = Field(default=False, description="Log one line per request (costs ~5% throughput).")
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, every endpoint except health and /metrics needs "
        "'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
    )
    repository_control: bool = Field(
        default=False,
        description="Allow repository control (POST /v2/repository/index, .../load, .../unload). "
        "Off: those answer 403.",
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="When set, repository control needs this key ('Authorization: Bearer <key>' or "
        "'X-API-Key: <key>') instead of FUSION_API_KEY. Needs FUSION_REPOSITORY_CONTROL=true.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Comma-separated origins (scheme://host[:port]) whose browser pages may call the "
        "API, or '*' for any; empty (the default) sends no CORS headers, so browsers keep "
        "other sites' pages from reading answers.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body in bytes; larger ones get 413."
    )
    max_image_pixels: int = Field(
        default=MAX_IMAGE_PIXELS,
        ge=1,
        description="Largest image (width x height) accepted, checked from the header.",
    )
    max_audio_seconds: float = Field(
        default=MAX_AUDIO_SECONDS,
        gt=0,
        description="Longest audio clip in seconds accepted, checked from the header.",
    )
    max_text_chars: int = Field(
        default=MAX_TEXT_CHARS, ge=1, description="Longest text in characters accepted."
    )
    max_instances: int = Field(
        default=64,
        ge=1,
        description="Most samples in one request: the 'instances' list of /v1, dim 0 (the batch) "
        "of a V2 infer request, checked before anything is decoded or filled in.",
    )
    min_confidence: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Default of the predict option min_confidence: an answer whose fused probability "
        "is below it comes back with status 'uncertain' and no label (0 = never; see docs/api.md).",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes sharing the port (python -m app), each with its own event loop, "
        "models and limits: use one per core beyond the first. /metrics counts per process.",
    )
    max_batch_size: int = Field(
        default=32, ge=1, description="Most rows the batcher puts into one onnxruntime run (per model)."
    )
    max_batch_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="How long a batch waits for more requests after its first one. 0 = take only what "
        "is already queued (no added latency; batches still form under load while a run is busy).",
    )
    max_inflight_bytes: int = Field(
        default=48 * 1024 * 1024,
        ge=1024,
        description="Memory budget: request body bytes held by all requests in flight together. A "
        "request over 64 KiB that would pass it gets 503 with Retry-After before more is read.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Most open client connections; one more is answered 503 (Retry-After) and closed.",
    )
    keep_alive_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="An idle connection (no request yet, or between requests) is closed after this.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request's line and headers must arrive within this, from its first byte; "
        "else 408 and the connection is closed.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request's whole body must arrive within this, from its headers; else 408 and "
        "the connection is closed.",
    )
    shutdown_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="On SIGTERM: readiness turns 503, the listener closes, requests in flight get this "
        "long to finish; then they are cancelled and the process exits, whatever clients do.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_key", "admin_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return [o.strip() for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if o != "*" and not ORIGIN_RE.match(o)]
        if bad:
            raise ValueError(f"{bad} are not origins: write scheme://host[:port] (no path), or '*'")
        return value

    @model_validator(mode="after")
    def _admin_key_needs_control(self) -> Settings:
        if self.admin_api_key is not None and not self.repository_control:
            raise ValueError(
                "FUSION_ADMIN_API_KEY is set but repository control is off: also set "
                "FUSION_REPOSITORY_CONTROL=true, or unset the admin key"
            )
        return self

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in PROVIDER_ALIASES:
            return value.lower()
        import onnxruntime as ort  # here, so importing the settings stays cheap

        names = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [p for p in names if p not in ort.get_all_providers()]
        if not names or unknown:
            raise ValueError(
                f"unknown execution provider(s) {unknown or [value]}: use auto, cpu, cuda or a "
                f"comma-separated list of onnxruntime provider names (e.g. CPUExecutionProvider)"
            )
        return ",".join(names)

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(
                f"{value} is not a directory: point it at the model repository "
                "(the folder holding <name>/<version>/model.onnx)"
            )
        return value

    @property
    def max_batch_delay_s(self) -> float:
        """The batch delay in seconds, as asyncio wants it."""
        return self.max_batch_delay_ms / 1000.0


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (``overrides`` win), or explain what to fix.

    Raises:
        ConfigError: one line per invalid variable: its name, the value's problem, what it means.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """Turn a settings ValidationError into lines naming the ``FUSION_*`` variable to set."""
    lines = ["invalid server settings:"]
    for err in exc.errors():
        if not err["loc"]:  # a rule between settings: its message names them
            lines.append("  " + str(err["msg"]).removeprefix("Value error, "))
            continue
        field = str(err["loc"][0])
        info = Settings.model_fields.get(field)
        hint = f" Expected: {info.description}" if info and info.description else ""
        given = f" (got {err['input']!r})" if not isinstance(err["input"], dict) else ""
        lines.append(f"  {ENV_PREFIX}{field.upper()}: {err['msg']}{given}.{hint}")
    return "\n".join(lines)
