"""Opinions, Shapley values, agreement and abstention through the V2 protocol (docs/v2.md).

A V2 request asks for them with request ``parameters``: ``explain`` (bool), ``explain_method``
(``shapley`` or ``leave_one_out``), ``min_confidence`` (0..1; the server's
``FUSION_MIN_CONFIDENCE`` when left out) and ``abstain_on_conflict`` (bool). The response then
carries one more output, ``explanation``: ``BYTES`` ``[B]``, one JSON object per row holding the
friendly answer's fields (``status``, ``label``, ``opinions``, ``agreement``, ``contributions``,
``explanation``, ``abstention``, ...). The model's own outputs are unchanged: the coalition rows
(:mod:`app.explain`) ride in the same onnxruntime batch and are cut off before encoding.
A request without those parameters runs exactly as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np

from app.batching import AdaptiveBatcher
from app.coalitions import widen
from app.explain import EXPLAIN_METHODS, AnswerPlan
from app.inputs import Layout, assemble
from app.manifest import Manifest
from app.media import MODALITIES
from app.outputs import postprocess
from app.v2.errors import V2Error

EXPLANATION = "explanation"
INLINE_ROWS = 16
"""Requests with more rows are expanded and explained in a worker thread."""
PARAMETERS = ("explain", "explain_method", "min_confidence", "abstain_on_conflict")
FIELDS = (
    "status",
    "label",
    "label_index",
    "explain_method",
    "contributions",
    "opinions",
    "agreement",
    "explanation",
    "abstention",
)
Tensors = dict[str, np.ndarray]
Submit = Callable[[Tensors], Awaitable[Mapping[str, np.ndarray]]]


def trust_plan(
    manifest: Manifest, parameters: Mapping[str, Any], default_min_confidence: float
) -> AnswerPlan | None:
    """The plan the request's parameters ask for, or ``None`` when they ask for none of it.

    Raises:
        V2Error: a parameter of the wrong type or out of range (named).
    """
    if not any(p in parameters for p in PARAMETERS):
        return None
    explain = _flag(parameters, "explain")
    method = parameters.get("explain_method", "shapley")
    if method not in EXPLAIN_METHODS:
        raise V2Error(f"parameters.explain_method must be one of {list(EXPLAIN_METHODS)}, got {method!r}")
    min_confidence = parameters.get("min_confidence", default_min_confidence)
    if (
        isinstance(min_confidence, bool)
        or not isinstance(min_confidence, int | float)
        or not 0 <= min_confidence <= 1
    ):
        raise V2Error(f"parameters.min_confidence must be a number from 0 to 1, got {min_confidence!r}")
    return AnswerPlan.build(
        manifest,
        explain=explain,
        method=method,
        min_confidence=float(min_confidence),
        abstain_on_conflict=_flag(parameters, "abstain_on_conflict"),
    )


def _flag(parameters: Mapping[str, Any], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise V2Error(f"parameters.{name} must be true or false, got {value!r}")
    return value


async def run_explained(
    submit: Submit,
    manifest: Manifest,
    inputs: Tensors,
    plan: AnswerPlan | None,
    coalitions: AdaptiveBatcher | None = None,
) -> Mapping[str, np.ndarray]:
    """Run ``inputs`` through ``submit``; with a plan, add the coalition rows and the explanation output.

    The request's own rows go in unchanged (rows ``0..B-1``), so the model's outputs are those a
    request without the parameters gets; coalition rows follow them in the same batch. A model
    with a coalition graph (``coalitions``, :mod:`app.coalitions`) answers them in one pass instead.
    """
    if plan is None:
        return await submit(inputs)
    n = len(next(iter(inputs.values())))
    if coalitions is not None and plan.extra_rows:
        mask = inputs["mask"]
        present = [[m for j, m in enumerate(MODALITIES) if mask[r, j] > 0] for r in range(n)]
        table, layout = widen(manifest, await coalitions.submit(inputs), Layout(present, []), plan)
        if n > INLINE_ROWS:
            return await asyncio.to_thread(_explained, manifest, table, layout, plan, n)
        return _explained(manifest, table, layout, plan, n)
    if n > INLINE_ROWS:  # tens of MB of coalition rows and JSON: keep the event loop free
        expanded, layout = await asyncio.to_thread(_expand, manifest, inputs, plan, n)
        outputs = await submit(expanded)
        return await asyncio.to_thread(_explained, manifest, outputs, layout, plan, n)
    expanded, layout = _expand(manifest, inputs, plan, n)
    return _explained(manifest, await submit(expanded), layout, plan, n)


def _expand(manifest: Manifest, inputs: Tensors, plan: AnswerPlan, n: int) -> tuple[Tensors, Layout]:
    """The request's rows unchanged, then each row's coalition rows (its modalities: the mask's 1s)."""
    mask = inputs["mask"] if "mask" in inputs else np.ones((n, len(MODALITIES)), dtype=np.float32)
    rows = [
        {m: inputs[m][r] for j, m in enumerate(MODALITIES) if m in inputs and mask[r, j] > 0}
        for r in range(n)
    ]
    expanded, layout = assemble(manifest, rows, plan.coalitions if plan.extra_rows else None)
    for name, tensor in inputs.items():
        expanded[name][:n] = tensor
    return expanded, layout


def _explained(
    manifest: Manifest, outputs: Mapping[str, np.ndarray], layout: Layout, plan: AnswerPlan, n: int
) -> Tensors:
    """The model's outputs for the request's rows, and the ``explanation`` output."""
    answers = postprocess(manifest, outputs, layout, top_k=1, plan=plan)
    explained = {name: np.asarray(array)[:n] for name, array in outputs.items()}
    docs = [{k: v for k, v in answer.to_dict().items() if k in FIELDS} for answer in answers]
    explained[EXPLANATION] = np.array(
        [json.dumps(d, separators=(",", ":")).encode() for d in docs], dtype=object
    )
    return explained
