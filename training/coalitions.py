"""The coalition graph: every modality subset of a sample in one pass of the encoders.

Explanations (``app.explain``) need the model's answer on each coalition of a sample's present
modalities: up to 8 masks for 3 modalities. Run as extra rows, that costs the whole model once
per coalition, encoders included, though the encoders' work is the same in every row: each
fusion masks a modality *after* encoding it (early: its block; intermediate and gated: its
features; late: its branch's answer), so a masked modality's input never reaches the output.

This module cuts an exported ``model.onnx`` at that point and writes ``coalitions.onnx``: the
encoders run once per sample, their outputs are repeated for the 8 coalition masks, and only
the part after the mask (the fusion head) runs 8 times. Its inputs are the model's; its outputs
are the model's own (for the sample's own mask) plus ``coalition_logits`` ``[B, 8, C]``, where
coalition ``k`` is the bit set over ``app.media.MODALITIES`` (bit ``j`` = modality ``j``) AND the
sample's mask. The cut is found from the graph alone:

- *head* nodes: those reading the ``mask`` input, directly or through other head nodes;
- the *frontier*: tensors the head reads that the encoder side computed from the data inputs
  (``[B, ...]``; an ``Unsqueeze`` just before the head moves into the head so the batch stays
  on axis 0). Each is repeated to ``[8 * B, ...]``, coalition-major;
- the mask becomes ``coalitions[k] * mask[b]`` for row ``k * B + b``.

:func:`write_coalitions` checks the result against the model itself, masked, on random inputs:
a model where the cut does not hold (a masked input that still changes the answer) is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from app.coalitions import COALITIONS, MASKS, OUTPUT, coalition_rows
from app.manifest import Manifest, sha256_file
from app.media import MODALITIES

PARITY_TOL = 1e-4
FILE = "coalitions.onnx"


class CoalitionError(ValueError):
    """The model cannot be cut into encoders and a mask-reading head."""


def _split(g: onnx.GraphProto) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto], list[str]]:
    """Encoder nodes, head nodes (topological order kept) and the frontier tensors."""
    data = {i.name for i in g.input if i.name != "mask"}
    from_mask, from_data = {"mask"}, set(data)
    head: list[onnx.NodeProto] = []
    enc: list[onnx.NodeProto] = []
    for node in g.node:
        reads = set(node.input)
        (head if reads & from_mask else enc).append(node)
        if reads & from_mask:
            from_mask.update(node.output)
        if reads & from_data:
            from_data.update(node.output)
    while True:
        made = {o: n for n in enc for o in n.output}
        frontier = sorted({i for n in head for i in n.input if i in from_data and (i in made or i in data)})
        moves = [made[t] for t in frontier if t in made and made[t].op_type == "Unsqueeze"]
        if not moves:
            return enc, head, frontier
        for node in moves:
            if any(node.output[0] in n.input for n in enc):
                raise CoalitionError(f"{node.output[0]} feeds both the encoders and the head")
            enc.remove(node)
            head.insert(0, node)


def coalition_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (inputs ``image``/``audio``/``text``/``mask``) -> its coalition graph (see above).

    Raises:
        CoalitionError: no ``mask`` input, or no head reading it.
    """
    g = model.graph
    if "mask" not in {i.name for i in g.input}:
        raise CoalitionError("the model has no mask input")
    enc, head, frontier = _split(g)
    if not head or not frontier:
        raise CoalitionError("no part of the model reads both the mask and the data")
    nodes = list(enc)
    consts: dict[str, np.ndarray] = {
        "cx_masks": MASKS,
        "cx_k": np.array([COALITIONS], np.int64),
        "cx_minus1": np.array([-1], np.int64),
        "cx_axis0": np.array([0], np.int64),
        "cx_axis1": np.array([1], np.int64),
        "cx_mask_shape": np.array([-1, len(MODALITIES)], np.int64),
        "cx_full": np.array(COALITIONS - 1, np.int64),
    }
    rename = {"mask": "cx_mask"}
    for t in frontier:  # [B, ...] -> [K, B, ...] -> [K * B, ...]
        x = rename[t] = f"cx.{t}"
        nodes += [
            helper.make_node("Shape", [t], [f"{x}.shape"]),
            helper.make_node("Concat", ["cx_k", f"{x}.shape"], [f"{x}.kshape"], axis=0),
            helper.make_node("Unsqueeze", [t, "cx_axis0"], [f"{x}.1"]),
            helper.make_node("Expand", [f"{x}.1", f"{x}.kshape"], [f"{x}.k"]),
            helper.make_node("Shape", [t], [f"{x}.rest"], start=1),
            helper.make_node("Concat", ["cx_minus1", f"{x}.rest"], [f"{x}.flat"], axis=0),
            helper.make_node("Reshape", [f"{x}.k", f"{x}.flat"], [x]),
        ]
    nodes += [  # [K, 1, 3] * [1, B, 3] -> [K * B, 3]
        helper.make_node("Unsqueeze", ["cx_masks", "cx_axis1"], ["cx_masks_k1"]),
        helper.make_node("Unsqueeze", ["mask", "cx_axis0"], ["cx_mask_1b"]),
        helper.make_node("Mul", ["cx_masks_k1", "cx_mask_1b"], ["cx_mask_kb"]),
        helper.make_node("Reshape", ["cx_mask_kb", "cx_mask_shape"], ["cx_mask"]),
    ]
    outs = {o.name for o in g.output}
    for node in head:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [f"hx_{i}" if i in outs else rename.get(i, i) for i in node.input]
        copy.output[:] = [f"hx_{o}" if o in outs else o for o in node.output]
        nodes.append(copy)
    for name in outs:  # [K * B, ...] -> [K, B, ...]; the model's own output is coalition K - 1
        nodes += [
            helper.make_node("Shape", [f"hx_{name}"], [f"{name}_rest"], start=1),
            helper.make_node("Concat", ["cx_k", "cx_minus1", f"{name}_rest"], [f"{name}_kshape"], axis=0),
            helper.make_node("Reshape", [f"hx_{name}", f"{name}_kshape"], [f"{name}_kb"]),
            helper.make_node("Gather", [f"{name}_kb", "cx_full"], [name], axis=0),
        ]
    nodes.append(helper.make_node("Transpose", ["logits_kb"], [OUTPUT], perm=[1, 0, 2]))
    classes = g.output[[o.name for o in g.output].index("logits")].type.tensor_type.shape.dim[-1].dim_value
    graph = helper.make_graph(
        sorted_nodes(nodes, [i.name for i in g.input], [*(i.name for i in g.initializer), *consts]),
        f"{g.name}_coalitions",
        list(g.input),
        [*g.output, helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", COALITIONS, classes])],
        initializer=[*g.initializer, *(numpy_helper.from_array(v, k) for k, v in consts.items())],
    )
    out = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    onnx.checker.check_model(out)
    return out


def sorted_nodes(nodes: list[onnx.NodeProto], inputs: list[str], known: list[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where each reads only what is known or made before it (stable)."""
    have, left, done = {*inputs, *known, ""}, list(nodes), []
    while left:
        ready = [n for n in left if all(i in have for i in n.input)]
        if not ready:
            raise CoalitionError(f"cannot order the graph: {left[0].op_type} waits on {list(left[0].input)}")
        for n in ready:
            done.append(n)
            have.update(n.output)
        left = [n for n in left if n not in ready]
    return done


def write_coalitions(model_path: Path, out: Path, batch: int = 5, seed: int = 0) -> str:
    """Write the coalition graph of ``model_path`` to ``out``, check it, return its sha256.

    The check runs on random inputs and mixed masks: coalition ``k`` of each row must equal the
    model itself run on that row with its mask AND ``k`` and the modalities left out zeroed, as
    the server's extra rows are made (within :data:`PARITY_TOL`).

    Raises:
        CoalitionError: the graph cannot be cut, or its answers differ from the model's.
    """
    model = onnx.load(str(model_path))
    onnx.save(coalition_graph(model), str(out))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    base = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    cut = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in base.get_inputs():
        shape = [batch, *spec.shape[1:]]
        feeds[spec.name] = (
            rng.integers(0, 256, shape).astype(np.uint8)
            if spec.type == "tensor(uint8)"
            else rng.standard_normal(shape).astype(np.float32)
        )
    feeds["mask"] = MASKS[rng.integers(1, COALITIONS, batch)]
    got = dict(zip([o.name for o in cut.get_outputs()], cut.run(None, feeds), strict=True))
    worst = max(
        float(np.abs(got[o.name] - ref).max())
        for o, ref in zip(base.get_outputs(), base.run(None, feeds), strict=True)
    )
    for k in range(COALITIONS):
        masked = coalition_rows(feeds, k)
        rows = masked["mask"].sum(axis=1) > 0
        if rows.any():
            ref = base.run(["logits"], masked)[0]
            worst = max(worst, float(np.abs(got[OUTPUT][rows, k] - ref[rows]).max()))
    if not worst <= PARITY_TOL:
        out.unlink()
        raise CoalitionError(f"{out.name} differs from {model_path.name} by {worst:.2e} > {PARITY_TOL:g}")
    return sha256_file(out)


def add_coalitions(version_dir: Path) -> bool:
    """Give a model version folder its coalition graph and name it in the manifest.

    Returns:
        False for a model without a ``mask`` input (a unimodal baseline), True otherwise.
    """
    manifest = Manifest.read(version_dir / "manifest.json")
    if not manifest.has_mask:
        return False
    sha = write_coalitions(version_dir / "model.onnx", version_dir / FILE)
    explain = manifest.explain.model_copy(update={"coalitions": FILE, "coalitions_sha256": sha})
    manifest.model_copy(update={"explain": explain}).write(version_dir / "manifest.json")
    return True


def main(argv: list[str] | None = None) -> None:
    """``python -m training.coalitions models/``: add coalition graphs to every version found."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("models", type=Path, help="a model repository (models/<name>/<version>/)")
    args = parser.parse_args(argv)
    for manifest in sorted(args.models.glob("*/*/manifest.json")):
        done = add_coalitions(manifest.parent)
        print(f"{manifest.parent}: {'coalitions.onnx written' if done else 'no mask input, skipped'}")


if __name__ == "__main__":
    main()
