"""The asynchronous client: :class:`fusion_client.Client` method for method, awaited, with ``aclose``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from fusion_client._base import DEFAULT_TIMEOUT, BaseClient, Call, Trust
from fusion_client._encoding import AudioInput, ImageInput
from fusion_client._exceptions import Timeout, TransportError, wrap_transport_error
from fusion_client._types import ModelInfo, ModelSummary, Prediction

if TYPE_CHECKING:
    import numpy as np

_sleep = asyncio.sleep  # module level so tests can replace it and retry without waiting


class AsyncClient(BaseClient):
    """An asyncio client for a fusionserve server.

    Use it as an async context manager (or await :meth:`aclose`) so its pool is released::

        async with AsyncClient() as client:
            print((await client.predict("late", image="digit.png", text="sept")).label)

    Args:
        base_url: Server URL; defaults to ``$FUSION_URL``, then ``http://127.0.0.1:8000``.
        api_key: Sent as ``Authorization: Bearer <key>``; defaults to ``$FUSION_API_KEY``.
        timeout: Seconds (or an :class:`httpx.Timeout`) for each attempt; ``None`` waits forever.
        retries: Extra attempts after a connection failure or a 503; 0 disables retrying.
        backoff: First wait between attempts in seconds, doubled each time up to ``backoff_max``.
        backoff_max: Longest wait between attempts unless the server sends ``Retry-After``.
        headers: Extra headers for every request.
        transport: An httpx transport, e.g. :class:`httpx.MockTransport` in tests.
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            backoff_max=backoff_max,
            headers=headers,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection pool."""
        await self._http.aclose()

    async def models(self) -> list[ModelSummary]:
        """Every model the server holds, with its versions and readiness."""
        return self._parse_models(await self._send(Call("GET", "/v1/models")))

    async def model(self, name: str, *, version: int | None = None) -> ModelInfo:
        """The card of one model: modalities, labels, metrics; the latest version unless given.

        Raises:
            NotFound: No such model or version.
        """
        return ModelInfo.from_json(self._json(await self._send(Call("GET", self._model_path(name, version)))))

    async def predict(
        self,
        model: str,
        *,
        image: ImageInput | None = None,
        audio: AudioInput | None = None,
        text: str | None = None,
        top_k: int | None = None,
        explain: bool = False,
        version: int | None = None,
        explain_method: str | None = None,
        min_confidence: float | None = None,
        abstain_on_conflict: bool = False,
    ) -> Prediction:
        """Classify one sample from any non-empty subset of its modalities.

        Args:
            model: Model name, e.g. ``"late"``.
            image: A path, bytes, binary file, ``PIL.Image`` or ``[H, W(, C)]`` array.
            audio: A path, bytes, binary file, or ``(samples, sample_rate)``.
            text: The text.
            top_k: How many labels to return (the server's default when ``None``).
            explain: Ask for per-modality contributions, opinions and agreement.
            version: Model version; the latest when ``None``.
            explain_method: ``"shapley"`` (the server's default) or ``"leave_one_out"``.
            min_confidence: Abstain (``status == "uncertain"``, no label) below this probability;
                the server's default when ``None``.
            abstain_on_conflict: Abstain when the modalities' own answers disagree.

        Raises:
            InvalidInput: The server could not use the input; the message says why.
            NotFound: No such model or version.
        """
        call = self._predict_call(
            model,
            image=image,
            audio=audio,
            text=text,
            top_k=top_k,
            explain=explain,
            version=version,
            trust=Trust(explain_method, min_confidence, abstain_on_conflict),
        )
        return Prediction.from_json(self._json(await self._send(call)))

    async def predict_many(
        self,
        model: str,
        instances: Iterable[Mapping[str, Any]],
        *,
        top_k: int | None = None,
        explain: bool = False,
        version: int | None = None,
        explain_method: str | None = None,
        min_confidence: float | None = None,
        abstain_on_conflict: bool = False,
    ) -> list[Prediction]:
        """Classify several samples in one request; answers come back in order.

        Args:
            model: Model name.
            instances: Mappings with any of the keys ``image``, ``audio``, ``text`` (values as in
                :meth:`predict`).
            top_k: As in :meth:`predict`.
            explain: As in :meth:`predict`.
            version: As in :meth:`predict`.
            explain_method: As in :meth:`predict`.
            min_confidence: As in :meth:`predict`.
            abstain_on_conflict: As in :meth:`predict`.
        """
        trust = Trust(explain_method, min_confidence, abstain_on_conflict)
        call, count = self._predict_many_call(
            model, instances, top_k=top_k, explain=explain, version=version, trust=trust
        )
        return self._parse_predictions(await self._send(call), count)

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        outputs: Sequence[str] | None = None,
        version: int | None = None,
        binary: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the model on raw tensors with the Open Inference Protocol (KServe V2).

        Args:
            model: Model name.
            inputs: Tensor name -> array, e.g. ``{"image": uint8 [B, 28, 28], "mask": float32 [B, 3]}``
                (digits; a model's ``ModelInfo.spec`` gives its own sizes).
            outputs: Output names to return; every output when ``None``.
            version: Model version; the latest when ``None``.
            binary: Use the binary tensor extension (fast, exact); ``False`` uses JSON tensors.
            parameters: Extra request-level parameters.

        Returns:
            Output name -> array.
        """
        call = self._infer_call(
            model, inputs, outputs=outputs, version=version, binary=binary, parameters=parameters
        )
        return self._parse_infer(await self._send(call))

    async def live(self) -> bool:
        """Whether the server process answers; ``False`` when unreachable. Never retries."""
        return await self._probe("/health/live")

    async def ready(self) -> bool:
        """Whether the server is ready to predict; ``False`` while loading or unreachable. Never retries."""
        return await self._probe("/health/ready")

    async def wait_ready(self, *, timeout: float = 30.0, interval: float = 0.25) -> None:
        """Wait until :meth:`ready`, e.g. right after starting the server.

        Raises:
            Timeout: Still not ready after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not await self.ready():
            if time.monotonic() >= deadline:
                raise Timeout(f"the server at {self.base_url} was not ready within {timeout:g} s")
            await _sleep(interval)

    async def _probe(self, path: str) -> bool:
        try:
            return self._health(await self._send(Call("GET", path, retry=False)))
        except TransportError:
            return False

    async def _send(self, call: Call) -> httpx.Response:
        """Send one call, retrying as :meth:`BaseClient._retry_delay` decides."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, json=call.json, content=call.content, headers=call.headers
                )
            except httpx.RequestError as exc:
                delay = self._retry_delay(attempt, error=exc) if call.retry else None
                if delay is None:
                    raise wrap_transport_error(exc, self.base_url) from exc
            else:
                delay = self._retry_delay(attempt, response=response) if call.retry else None
                if delay is None:
                    return response
            attempt += 1
            await _sleep(delay)
