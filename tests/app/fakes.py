"""Tiny ONNX models that follow the serving contract, built with ``onnx.helper`` (no torch).

Each modality goes through its own linear map to 10 logits; fusion models add them weighted by
the mask (``sum`` kind) or by mask-renormalised gate weights computed from the inputs
(``gated``, which also outputs ``weights`` [B, 3]). So the logits depend on every input and on
the mask, rows are independent of each other (batching must not change an answer), and a
masked modality changes the output. Variants that break the contract test the refusals.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

from app.manifest import Explain, Manifest, TensorSpec, sha256_file

LABELS = [str(i) for i in range(10)]
OPSET = 17
IR_VERSION = 8
SPECS = {
    "image": TensorSpec(name="image", dtype="uint8", shape=[-1, 28, 28]),
    "audio": TensorSpec(name="audio", dtype="float32", shape=[-1, 16000]),
    "text": TensorSpec(name="text", dtype="uint8", shape=[-1, 64]),
    "mask": TensorSpec(name="mask", dtype="float32", shape=[-1, 3]),
}
ONNX_TYPES = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}
FEATURES = {"image": 28 * 28, "audio": 16000, "text": 64}
SCALE = {"image": 1 / 255.0, "audio": 1.0, "text": 1 / 255.0}
GAIN = {"image": 6.0, "audio": 2.0, "text": 8.0}  # so that each modality moves the logits about as much


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, value: np.ndarray) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self.n += 1
        name = out or f"t{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], **attrs))
        return name

    def modality_logits(self, modality: str, features: int) -> str:
        """[B, ...] -> float -> [B, features] -> scaled -> MatMul -> [B, 10]."""
        x = self.op("Cast", modality, to=TensorProto.FLOAT)
        x = self.op("Reshape", x, self.const(np.array([-1, features], dtype=np.int64)))
        x = self.op("Mul", x, self.const(np.array(SCALE[modality], dtype=np.float32)))
        w = self.rng.normal(0, GAIN[modality] / np.sqrt(features), size=(features, 10)).astype(np.float32)
        return self.op("MatMul", x, self.const(w))

    def mask_column(self, j: int) -> str:
        starts, ends, axes = (self.const(np.array([v], dtype=np.int64)) for v in (j, j + 1, 1))
        return self.op("Slice", "mask", starts, ends, axes)


def build_onnx(
    modalities: list[str],
    *,
    gated: bool = False,
    seed: int = 0,
    image_size: int = 28,
    text_dtype: str = "uint8",
    constant_rows: bool = False,
) -> onnx.ModelProto:
    """A fusion graph over ``modalities`` (mask input when more than one), or a unimodal one."""
    g = _Graph(seed)
    fusion = len(modalities) > 1
    logits = {
        m: g.modality_logits(m, image_size * image_size if m == "image" else FEATURES[m]) for m in modalities
    }
    bias = g.const(g.rng.normal(0, 0.1, size=(10,)).astype(np.float32))
    outputs = ["logits"]
    if not fusion:
        total = logits[modalities[0]]
    elif gated:
        scores = [g.op("ReduceMean", logits[m], axes=[1], keepdims=1) for m in modalities]
        e = g.op("Mul", g.op("Exp", g.op("Concat", *scores, axis=1)), "mask")
        denom = g.op(
            "Add",
            g.op("ReduceSum", e, g.const(np.array([1], dtype=np.int64)), keepdims=1),
            g.const(np.array(1e-9, dtype=np.float32)),
        )
        weights = g.op("Div", e, denom, out="weights")
        parts = []
        for j, m in enumerate(modalities):
            starts, ends, axes = (g.const(np.array([v], dtype=np.int64)) for v in (j, j + 1, 1))
            parts.append(g.op("Mul", logits[m], g.op("Slice", weights, starts, ends, axes)))
        total = g.op("Sum", *parts)
        outputs.append("weights")
    else:
        total = g.op("Sum", *[g.op("Mul", logits[m], g.mask_column(j)) for j, m in enumerate(modalities)])
    if constant_rows:  # answers one row whatever the batch, hidden from shape inference: refused at warm-up
        one = g.op(
            "Reshape",
            g.op("Cast", g.op("ReduceMax", "mask", keepdims=0), to=TensorProto.INT64),
            g.const(np.array([1], dtype=np.int64)),
        )
        total = g.op(
            "Slice",
            total,
            g.const(np.array([0], dtype=np.int64)),
            one,
            g.const(np.array([0], dtype=np.int64)),
        )
    g.op("Add", total, bias, out="logits")

    def value_info(name: str, elem: int, dims: list[Any]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, dims)

    shapes = {"image": [image_size, image_size], "audio": [16000], "text": [64], "mask": [3]}
    names = [*modalities, "mask"] if fusion else modalities
    graph_inputs = []
    for name in names:
        dtype = text_dtype if name == "text" else SPECS[name].dtype
        graph_inputs.append(value_info(name, ONNX_TYPES[dtype], ["B", *shapes[name]]))
    graph_outputs = [value_info(o, TensorProto.FLOAT, ["B", 10 if o == "logits" else 3]) for o in outputs]
    graph = helper.make_graph(g.nodes, "fake", graph_inputs, graph_outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def make_manifest(
    name: str, version: int, modalities: list[str], *, gated: bool = False, **extra: Any
) -> Manifest:
    fusion = "unimodal" if len(modalities) == 1 else ("gated" if gated else "late")
    inputs = [SPECS[m] for m in modalities] + ([SPECS["mask"]] if len(modalities) > 1 else [])
    outputs = [TensorSpec(name="logits", dtype="float32", shape=[-1, 10])]
    if gated:
        outputs.append(TensorSpec(name="weights", dtype="float32", shape=[-1, 3]))
    explain = (
        Explain(method="gate_weights", output="weights")
        if gated
        else Explain(method="leave_one_out" if len(modalities) > 1 else "none")
    )
    fields: dict[str, Any] = dict(
        name=name,
        version=version,
        fusion=fusion,
        description=f"fake {fusion} model for tests",
        modalities=modalities,
        inputs=inputs,
        outputs=outputs,
        explain=explain,
        labels=LABELS,
        metrics={"accuracy": 0.5},
    )
    fields.update(extra)
    return Manifest(**fields)


def write_model(
    root: Path,
    name: str,
    version: int,
    modalities: list[str],
    *,
    gated: bool = False,
    seed: int = 0,
    manifest: Manifest | None = None,
    **graph_args: Any,
) -> Path:
    """Write ``root/name/version/{model.onnx,manifest.json}``; returns the version directory."""
    target = root / name / str(version)
    target.mkdir(parents=True, exist_ok=True)
    onnx.save(build_onnx(modalities, gated=gated, seed=seed, **graph_args), target / "model.onnx")
    manifest = manifest or make_manifest(name, version, modalities, gated=gated)
    manifest = manifest.model_copy(update={"onnx_sha256": sha256_file(target / "model.onnx")})
    manifest.write(target / "manifest.json")
    return target


ALL = ["image", "audio", "text"]


def write_repository(root: Path) -> Path:
    """The default fake repository: the names of the real models, plus two versions of ``late``."""
    write_model(root, "early", 1, ALL, seed=1, manifest=make_manifest("early", 1, ALL, fusion="early"))
    intermediate = make_manifest("intermediate", 1, ALL, fusion="intermediate")
    write_model(root, "intermediate", 1, ALL, seed=2, manifest=intermediate)
    write_model(root, "late", 1, ALL, seed=3)
    write_model(root, "late", 2, ALL, seed=4)
    write_model(root, "gated", 1, ALL, gated=True, seed=5)
    write_model(root, "image_only", 1, ["image"], seed=6)
    write_model(root, "audio_only", 1, ["audio"], seed=7)
    write_model(root, "text_only", 1, ["text"], seed=8)
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"this is not an onnx file")
    make_manifest("broken", 1, ALL).write(broken / "manifest.json")
    return root


# -- media ---------------------------------------------------------------------------------------


def png_bytes(digit_stroke: int = 0, size: int = 28, mode: str = "L") -> bytes:
    """A small PNG with a stroke; different ``digit_stroke`` values give different pictures."""
    img = Image.new(mode, (size, size), 0)
    offset = digit_stroke * 2
    ImageDraw.Draw(img).line([(4 + offset, 4), (size - 6, 6 + offset), (10, size - 4)], fill=255, width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(freq: float = 440.0, seconds: float = 1.0, rate: int = 16000, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt)
    return buf.getvalue()


# -- models whose explanations are known in closed form (issue 12) -------------------------------


def _graph_io(outputs: list[str], classes: int = 10) -> tuple[list[Any], list[Any]]:
    """The contract's four inputs (all of them, mask included) and float outputs [B, classes]."""
    shapes = {"image": [28, 28], "audio": [16000], "text": [64], "mask": [3]}
    inputs = [helper.make_tensor_value_info(n, ONNX_TYPES[SPECS[n].dtype], ["B", *shapes[n]]) for n in shapes]
    return inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["B", classes]) for o in outputs]


def _finish(g: _Graph, outputs: list[str]) -> onnx.ModelProto:
    inputs, outs = _graph_io(outputs)
    model = helper.make_model(
        helper.make_graph(g.nodes, "fake", inputs, outs, g.inits),
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    return model


def build_vote_onnx(gains: dict[str, float], interaction: float = 0.0) -> onnx.ModelProto:
    """Each modality votes for one class, read from its input; logits = sum of present votes.

    image: a uniform picture of value ``25 c + 10`` votes ``c``; audio: a constant clip of value
    ``c / 10`` votes ``c``; text: a first character ``"c"`` votes ``c``. A vote adds ``gains[m]``
    to its class's logit, times the mask. ``interaction`` adds that much to class 0 for every
    present modality beyond the first: the fused answer can then be a class no modality names.
    """
    g = _Graph(0)
    ten = g.const(np.array(10, dtype=np.int64))
    on_off = g.const(np.array([0.0, 1.0], dtype=np.float32))
    image = g.op("ReduceMean", g.op("Cast", "image", to=TensorProto.FLOAT), axes=[1, 2], keepdims=0)
    image = g.op("Floor", g.op("Div", image, g.const(np.array(25.6, dtype=np.float32))))
    audio = g.op("ReduceMean", "audio", axes=[1], keepdims=0)
    audio = g.op(
        "Floor",
        g.op(
            "Add", g.op("Mul", audio, g.const(np.array(10, np.float32))), g.const(np.array(0.5, np.float32))
        ),
    )
    first = g.op("Slice", "text", *(g.const(np.array([v], dtype=np.int64)) for v in (0, 1, 1)))
    text = g.op(
        "Sub",
        g.op("Reshape", g.op("Cast", first, to=TensorProto.FLOAT), g.const(np.array([-1], np.int64))),
        g.const(np.array(48, np.float32)),
    )
    parts = []
    for j, (m, c) in enumerate((("image", image), ("audio", audio), ("text", text))):
        vote = g.op("OneHot", g.op("Cast", c, to=TensorProto.INT64), ten, on_off, axis=-1)
        parts.append(
            g.op("Mul", g.op("Mul", vote, g.mask_column(j)), g.const(np.array(gains[m], np.float32)))
        )
    total = g.op("Sum", *parts)
    extra = g.op(
        "Relu",
        g.op(
            "Sub",
            g.op("ReduceSum", "mask", g.const(np.array([1], np.int64)), keepdims=1),
            g.const(np.array(1, np.float32)),
        ),
    )
    bonus = np.zeros(10, dtype=np.float32)
    bonus[0] = interaction
    g.op("Add", total, g.op("Mul", extra, g.const(bonus)), out="logits")
    return _finish(g, ["logits"])


def vote_payload(
    image: int | None = None, audio: int | None = None, text: int | None = None
) -> dict[str, Any]:
    """A JSON sample whose modalities vote for these classes in :func:`build_vote_onnx`."""
    sample: dict[str, Any] = {}
    if image is not None:
        sample["image"] = {"array": [[25 * image + 10] * 28] * 28}
    if audio is not None:
        sample["audio"] = {"array": [audio / 10] * 16000, "sample_rate": 16000}
    if text is not None:
        sample["text"] = f"{text} vote"
    return sample


def build_additive_onnx(weights: dict[str, float], bias: float) -> onnx.ModelProto:
    """log p(class 0) = ``bias + sum of weights[m] over the present modalities``, exactly.

    logits = ``[s, r, ..., r]`` with ``s`` that sum and ``r = log((1 - e^s) / 9)``, so the softmax
    gives ``p_0 = e^s``: the log-probability of class 0 is additive in the modalities, and its
    Shapley values are the weights themselves. Keep ``s`` in ``(log 0.1, 0)`` so class 0 wins.
    """
    g = _Graph(0)
    w = np.array([[weights.get(m, 0.0)] for m in ("image", "audio", "text")], dtype=np.float32)
    s = g.op("Add", g.op("MatMul", "mask", g.const(w)), g.const(np.array(bias, np.float32)))
    rest = g.op(
        "Log",
        g.op(
            "Div",
            g.op("Sub", g.const(np.array(1, np.float32)), g.op("Exp", s)),
            g.const(np.array(9, np.float32)),
        ),
    )
    others = g.op("Tile", rest, g.const(np.array([1, 9], dtype=np.int64)))
    g.op("Concat", s, others, axis=1, out="logits")
    return _finish(g, ["logits"])


def save_graph(root: Path, model: onnx.ModelProto, manifest: Manifest) -> Path:
    """Write a hand-built graph and its manifest under ``root/<name>/<version>``."""
    target = root / manifest.name / str(manifest.version)
    target.mkdir(parents=True, exist_ok=True)
    onnx.save(model, target / "model.onnx")
    manifest.model_copy(update={"onnx_sha256": sha256_file(target / "model.onnx")}).write(
        target / "manifest.json"
    )
    return target
