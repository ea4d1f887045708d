"""What :class:`Client` and :class:`AsyncClient` share: settings, request building, retry
decisions and response parsing. The two subclasses only do I/O, so they cannot drift apart.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from fusion_client._encoding import encode_instance, encode_mapping
from fusion_client._exceptions import DecodeError, error_for_response
from fusion_client._types import ModelSummary, Prediction
from fusion_client._v2 import HEADER_LENGTH, decode_response, encode_request
from fusion_client._version import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this is not waited for: the call fails at once with ``Unavailable``."""


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP exchange to make: the subclasses send it, retrying as :meth:`BaseClient._retry_delay` says."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    retry: bool = True


@dataclass(frozen=True, slots=True)
class Trust:
    """The options that make an answer explain itself or abstain (``docs/api.md``, "Trusting an answer").

    ``None`` / ``False`` fields are not sent, so the server's defaults apply.
    """

    explain_method: str | None = None
    min_confidence: float | None = None
    abstain_on_conflict: bool = False

    def options(self) -> dict[str, Any]:
        """The request options these set."""
        options: dict[str, Any] = {}
        if self.explain_method is not None:
            options["explain_method"] = self.explain_method
        if self.min_confidence is not None:
            options["min_confidence"] = self.min_confidence
        if self.abstain_on_conflict:
            options["abstain_on_conflict"] = True
        return options


class BaseClient:
    """Settings and protocol logic; no I/O.

    Args:
        base_url: Server URL; defaults to ``$FUSION_URL``, then ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer <key>``; defaults to ``$FUSION_API_KEY``.
        timeout: Seconds (or an :class:`httpx.Timeout`) for each attempt.
        retries: Extra attempts after a connection failure or a 503; 0 disables retrying.
        backoff: First wait between attempts in seconds; doubles each time, up to ``backoff_max``.
        backoff_max: Longest wait between two attempts unless the server sends ``Retry-After``.
        headers: Extra headers for every request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.25,
        backoff_max: float = 8.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if backoff < 0 or backoff_max < 0:
            raise ValueError("backoff and backoff_max must be >= 0")
        self.base_url = (base_url or os.environ.get("FUSION_URL") or DEFAULT_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        key = api_key if api_key is not None else os.environ.get("FUSION_API_KEY")
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._timeout = timeout
        self._headers = {"User-Agent": f"fusionserve-client/{__version__}", **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- retrying ---------------------------------------------------------------------------

    def _retry_delay(
        self, attempt: int, *, response: httpx.Response | None = None, error: Exception | None = None
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to stop.

        Only two things are retried: a connection that could not be made (the request never
        reached the server, so repeating it is safe) and a 503 (not ready or overloaded). A 4xx
        never is: the same request would fail the same way.
        """
        if attempt >= self.retries:
            return None
        if error is not None:
            connect_failed = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            return self._backoff(attempt) if connect_failed else None
        if response is None or response.status_code != 503:
            return None
        after = retry_after(response)
        if after is None:
            return self._backoff(attempt)
        return after if after <= MAX_RETRY_AFTER else None

    def _backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter so that many clients do not retry in step."""
        return min(self.backoff_max, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    # -- requests ---------------------------------------------------------------------------

    @staticmethod
    def _model_path(name: str, version: int | None, suffix: str = "", *, api: str = "v1") -> str:
        path = f"/{api}/models/{quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return path + suffix

    @staticmethod
    def _options(top_k: int | None, explain: bool, version: int | None, trust: Trust) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if top_k is not None:
            options["top_k"] = top_k
        if explain:
            options["explain"] = True
        if version is not None:
            options["version"] = version
        options.update(trust.options())
        return options

    def _predict_call(
        self,
        model: str,
        *,
        image: Any,
        audio: Any,
        text: str | None,
        top_k: int | None,
        explain: bool,
        version: int | None,
        trust: Trust,
    ) -> Call:
        body = encode_instance(image=image, audio=audio, text=text)
        options = self._options(top_k, explain, version, trust)
        if options:
            body["options"] = options
        return Call("POST", self._model_path(model, None, "/predict"), json=body)

    def _predict_many_call(
        self,
        model: str,
        instances: Iterable[Mapping[str, Any]],
        *,
        top_k: int | None,
        explain: bool,
        version: int | None,
        trust: Trust,
    ) -> tuple[Call, int]:
        encoded = [encode_mapping(instance) for instance in instances]
        if not encoded:
            raise ValueError("predict_many() needs at least one instance")
        body: dict[str, Any] = {"instances": encoded}
        options = self._options(top_k, explain, version, trust)
        if options:
            body["options"] = options
        return Call("POST", self._model_path(model, None, "/predict"), json=body), len(encoded)

    def _infer_call(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        outputs: Sequence[str] | None,
        version: int | None,
        binary: bool,
        parameters: Mapping[str, Any] | None,
    ) -> Call:
        content, headers = encode_request(inputs, outputs=outputs, binary=binary, parameters=parameters)
        path = self._model_path(model, version, "/infer", api="v2")
        return Call("POST", path, content=content, headers=headers)

    # -- responses --------------------------------------------------------------------------

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        raise error_for_response(response, retry_after=retry_after(response))

    @classmethod
    def _json(cls, response: httpx.Response) -> Any:
        cls._check(response)
        try:
            return response.json()
        except ValueError as exc:
            raise DecodeError(f"the server's answer is not JSON: {response.text[:200]!r}") from exc

    @classmethod
    def _parse_models(cls, response: httpx.Response) -> list[ModelSummary]:
        data = cls._json(response)
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise DecodeError('expected {"models": [...]} from GET /v1/models')
        return [ModelSummary.from_json(item) for item in data["models"]]

    @classmethod
    def _parse_predictions(cls, response: httpx.Response, expected: int) -> list[Prediction]:
        data = cls._json(response)
        if not isinstance(data, dict) or not isinstance(data.get("predictions"), list):
            raise DecodeError('expected {"predictions": [...]} for a request with instances')
        if len(data["predictions"]) != expected:
            raise DecodeError(f"sent {expected} instances but got {len(data['predictions'])} predictions")
        return [Prediction.from_json(item) for item in data["predictions"]]

    @classmethod
    def _parse_infer(cls, response: httpx.Response) -> dict[str, Any]:
        cls._check(response)
        return decode_response(response.content, response.headers.get(HEADER_LENGTH))

    @staticmethod
    def _health(response: httpx.Response) -> bool:
        if response.status_code == 503:
            return False
        BaseClient._check(response)
        return True


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if valid."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
