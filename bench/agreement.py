"""How often the served ``agreement.agree`` flag is false: on clean agreeing samples (false
alarms) and with one modality swapped to another class's sample (conflicts caught).

    python -m bench.agreement [--models late,gated,intermediate,early] [--models-dir models]

Reads the built-in data's clean tier (``make data`` builds it), runs each exported model with
onnxruntime on the one-hot and full masks, exactly as the server's explain rows do, and applies
the server's own :func:`app.agreement.agreement` to every row. Prints one line per model and case.
Also prints the plain "a modality names another label" rate, the flag's earlier definition.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.agreement import agreement
from app.media import MODALITIES
from app.outputs import softmax

BATCH = 500


def _probs(session: ort.InferenceSession, arrays: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    n = len(mask)
    out = []
    for s in range(0, n, BATCH):
        feed = {k: v[s : s + BATCH] for k, v in arrays.items()} | {"mask": mask[s : s + BATCH]}
        out.append(session.run(["logits"], feed)[0])
    return softmax(np.concatenate(out))  # the server's own softmax


def flags(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the server's ``agree`` is false; some modality alone names another label."""
    n = len(arrays["image"])
    fused = _probs(session, arrays, np.ones((n, len(MODALITIES)), np.float32)).argmax(axis=1)
    alone = []
    for i in range(len(MODALITIES)):
        mask = np.zeros((n, len(MODALITIES)), np.float32)
        mask[:, i] = 1.0
        alone.append(_probs(session, arrays, mask))
    conflict, differs = np.zeros(n, bool), np.zeros(n, bool)
    for r in range(n):
        opinions = {
            m: {
                "label": str(int(p[r].argmax())),
                "probability": float(p[r].max()),
                "fused_label_probability": float(p[r, fused[r]]),
            }
            for m, p in zip(MODALITIES, alone, strict=True)
        }
        conflict[r] = not agreement(opinions, str(int(fused[r])))["agree"]
        differs[r] = len({o["label"] for o in opinions.values()}) > 1
    return conflict, differs


def main() -> None:
    from training.data.tiers import load_tiers  # the trainer's data: a bench-only dependency
    from training.metrics import donors

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="late,gated,intermediate,early")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clean = load_tiers(seed=args.seed, progress=False)["clean"]
    labels = np.asarray(clean.label)
    donor = donors(labels, np.random.default_rng([args.seed, 7]))  # as the report's conflict table
    if donor is None:
        raise SystemExit("the clean tier holds one class only: nothing to swap")
    base = {m: np.asarray(getattr(clean, m)) for m in MODALITIES}
    for name in args.models.split(","):
        session = ort.InferenceSession(
            str(args.models_dir / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        cases = {"clean, agreeing": base} | {f"{m} swapped": base | {m: base[m][donor]} for m in MODALITIES}
        for case, arrays in cases.items():
            conflict, differs = flags(session, arrays)
            print(
                f"{name:>12} {case:>15}: agree=false {100 * conflict.mean():5.1f}%   "
                f"a modality names another label {100 * differs.mean():5.1f}%   (n={len(conflict)})"
            )


if __name__ == "__main__":
    main()
