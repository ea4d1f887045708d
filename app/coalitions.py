"""Explanations from a model's coalition graph: every modality subset in one pass of the encoders.

Opinions, Shapley values and leave-one-out (:mod:`app.explain`) need the model's answer on the
coalitions of a sample's present modalities. Without help they run as extra rows of the model,
each paying for the encoders again. A model exported with a coalition graph
(``manifest.explain.coalitions``, made by ``training/coalitions.py``) answers them all at once:
the same inputs as the model, the model's own outputs, plus ``coalition_logits`` ``[B, 8, C]``
(coalition ``k`` is a bit set over :data:`app.media.MODALITIES` AND the row's own mask). Its
encoders run once per sample, so an explained request costs about what a plain one does.

:func:`check_coalitions` holds the graph to the model at load: on a probe batch its outputs must
match the model's, and each coalition the model run with that mask. A file that is missing,
altered or does not match is logged and left unused: explanations then fall back to extra rows,
with the same answers (a test compares the two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.batching import Tensors
from app.errors import ModelLoadError
from app.explain import AnswerPlan, bit_set
from app.inputs import Layout
from app.manifest import Manifest, sha256_file
from app.media import MODALITIES

OUTPUT = "coalition_logits"
COALITIONS = 1 << len(MODALITIES)
MASKS = np.array([[k >> j & 1 for j in range(len(MODALITIES))] for k in range(COALITIONS)], np.float32)
"""Row ``k``: the mask of coalition ``k``."""
TOLERANCE = 1e-4


def coalitions_file(manifest: Manifest, folder: Path) -> Path | None:
    """The coalition graph the manifest names, checked against its sha256; ``None`` if it names none.

    Raises:
        ModelLoadError: the file is missing or is not the one the manifest names.
    """
    name = manifest.explain.coalitions
    if name is None:
        return None
    path = folder / name
    if not path.is_file():
        raise ModelLoadError(f"{name} is missing")
    if manifest.explain.coalitions_sha256 and sha256_file(path) != manifest.explain.coalitions_sha256:
        raise ModelLoadError(f"{name} does not match the manifest's coalitions_sha256")
    return path


def coalition_rows(inputs: Mapping[str, np.ndarray], k: int) -> Tensors:
    """``inputs`` as the extra rows of coalition ``k`` are made (:func:`app.inputs.assemble`).

    Each row's mask AND ``k``, and each modality outside that mask zeroed: what the coalition
    graph's ``coalition_logits[:, k]`` must equal when the model is run on it.
    """
    mask = inputs["mask"] * MASKS[k]
    rows: Tensors = {"mask": mask}
    for name, x in inputs.items():
        if name in MODALITIES:
            keep = mask[:, MODALITIES.index(name)] > 0
            rows[name] = x * keep.reshape(-1, *[1] * (x.ndim - 1)).astype(x.dtype)
        elif name != "mask":
            rows[name] = x
    return rows


def output_names(manifest: Manifest) -> list[str]:
    """What a coalition graph's run returns: the model's outputs, then ``coalition_logits``."""
    return [o.name for o in manifest.outputs] + [OUTPUT]


def check_coalitions(
    manifest: Manifest, session: ort.InferenceSession, predict: Callable[[Tensors], Tensors], probe: Tensors
) -> None:
    """The coalition graph answers as the model does, on ``probe`` and on each coalition of it
    (the model run on the coalition's rows: :func:`coalition_rows`).

    Args:
        manifest: the model's card.
        session: the coalition graph's session.
        predict: the model itself (blocking).
        probe: model inputs of a few rows, their masks included.

    Raises:
        ModelLoadError: an output is missing, has the wrong shape, or differs from the model's.
    """
    names = output_names(manifest)
    if not set(names) <= {o.name for o in session.get_outputs()}:
        raise ModelLoadError(f"{manifest.explain.coalitions} lacks one of the outputs {names}")
    got = dict(zip(names, session.run(names, probe), strict=True))
    rows, classes = len(probe["mask"]), len(manifest.labels)
    if got[OUTPUT].shape != (rows, COALITIONS, classes):
        raise ModelLoadError(f"{OUTPUT} has shape {got[OUTPUT].shape}, not {(rows, COALITIONS, classes)}")
    worst = max(float(np.abs(got[k] - v).max()) for k, v in predict(probe).items())
    for k in range(1, COALITIONS):
        masked = coalition_rows(probe, k)
        live = masked["mask"].sum(axis=1) > 0
        if live.any():
            want = predict(masked)[manifest.logits_output]
            worst = max(worst, float(np.abs(got[OUTPUT][live, k] - want[live]).max()))
    if not worst <= TOLERANCE:
        raise ModelLoadError(f"{manifest.explain.coalitions} differs from model.onnx by {worst:.2g}")


def widen(
    manifest: Manifest, outputs: Mapping[str, np.ndarray], layout: Layout, plan: AnswerPlan
) -> tuple[Tensors, Layout]:
    """A coalition graph's outputs in the shape extra rows give: one logits row per coalition used.

    Rows ``0..n-1`` stay the samples' own; sample ``i``'s coalition ``k`` is row ``n + 8 i + k``.
    So :func:`app.outputs.postprocess` reads them exactly as it reads extra rows.

    Args:
        manifest: the model's card.
        outputs: the coalition graph's outputs for ``n`` samples, one row each.
        layout: the samples' layout from :func:`app.inputs.assemble` without coalitions.
        plan: the request's plan (which coalitions it uses).
    """
    n = len(layout.present)
    logits, table = outputs[manifest.logits_output], outputs[OUTPUT]
    widened = {k: v for k, v in outputs.items() if k != OUTPUT}
    widened[manifest.logits_output] = np.concatenate([logits, table.reshape(n * COALITIONS, -1)])
    rows = []
    for i, mods in enumerate(layout.present):
        wanted: Iterable[int] = plan.coalitions(mods)
        if plan.method == "shapley":
            wanted = {*wanted, 0}  # computed anyway: no need for the cached empty row
        rows.append({bit_set(mods): i, **{k: n + COALITIONS * i + k for k in wanted}})
    return widened, replace(layout, rows=rows)
