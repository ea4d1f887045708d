"""The coalition graph (training/coalitions.py): cut at the mask, checked against the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.manifest import Manifest
from training.coalitions import CoalitionError, write_coalitions

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["late", "intermediate", "gated", "early"])
def test_the_committed_coalition_graphs_are_remade_byte_for_byte(name: str, tmp_path: Path) -> None:
    """write_coalitions checks each coalition against the model masked; the bytes are reproducible."""
    version = ROOT / "models" / name / "1"
    sha = write_coalitions(version / "model.onnx", tmp_path / "coalitions.onnx")
    assert sha == Manifest.read(version / "manifest.json").explain.coalitions_sha256
    assert (tmp_path / "coalitions.onnx").read_bytes() == (version / "coalitions.onnx").read_bytes()


def leaky_model(path: Path) -> None:
    """logits = image @ W + (mask * image_sum) @ V: a masked image still changes the answer."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["direct"]),
        helper.make_node("MatMul", ["flat", "u"], ["feat"]),
        helper.make_node("Mul", ["feat", "mask"], ["gated"]),
        helper.make_node("MatMul", ["gated", "v"], ["head"]),
        helper.make_node("Add", ["head", "direct"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "leaky",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 4, 4]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 3]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "u"),
            numpy_helper.from_array(rng.standard_normal((3, 10)).astype(np.float32), "v"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_model_whose_masked_input_still_counts_is_refused(tmp_path: Path) -> None:
    leaky_model(tmp_path / "model.onnx")
    with pytest.raises(CoalitionError, match="differs from model.onnx"):
        write_coalitions(tmp_path / "model.onnx", tmp_path / "coalitions.onnx")
    assert not (tmp_path / "coalitions.onnx").exists()


def test_a_model_without_a_mask_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CoalitionError, match="no mask input"):
        write_coalitions(ROOT / "models" / "text_only" / "1" / "model.onnx", tmp_path / "coalitions.onnx")
