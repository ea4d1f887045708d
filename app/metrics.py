"""Prometheus metrics (prometheus-client), one registry per app so several apps can coexist.

Exposed at ``GET /metrics``; the full list is in ``docs/serving.md``.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from app.batching import Observer

# Latency buckets from 250 us: the interesting range for small models is 1-20 ms.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Every metric the server exports, on its own :class:`CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fusion_requests",
            "HTTP requests by model (empty when none), route template and status code.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "fusion_request_duration_seconds",
            "End-to-end time in the server, from the first byte of the request to the last of the answer.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "fusion_decode_seconds",
            "Time to decode one payload (image, audio, text) into its tensor.",
            ["modality"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "fusion_inference_seconds",
            "Time of one onnxruntime run (one batch), thread hand-off included.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "fusion_batch_rows",
            "Rows per onnxruntime run (samples, plus leave-one-out rows when explaining).",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_ready = Gauge(
            "fusion_model_ready",
            "1 when a model version is loaded and serving, 0 when loading, refused or unloaded.",
            ["model", "version"],
            registry=r,
        )
        self.load_failures = Counter(
            "fusion_model_load_failures", "Model versions refused at load.", ["model"], registry=r
        )

    def batch_observer(self, model: str) -> Observer:
        """A callback for the batcher: records rows and run time of each batch of ``model``."""
        rows_hist = self.batch_rows.labels(model)
        time_hist = self.inference.labels(model)

        def observe(rows: int, seconds: float) -> None:
            rows_hist.observe(rows)
            time_hist.observe(seconds)

        return observe

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
