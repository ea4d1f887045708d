"""Tier evaluation, calibration and bootstrap statistics, on models whose answers are known.

The "oracle" ONNX models read the class straight from one element of each input (image pixel
0 = 20 x class, audio sample 0 = class / 10, text byte 0 = ASCII digit) and add one vote per
present modality, weighted by a per-modality gain. So a swapped modality is out-voted 2 to 1
(gain 1 each) or wins (a "bully" gain of 3), and every rate below has a closed form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.manifest import sha256_file
from tests.app.fakes import IR_VERSION, ONNX_TYPES, OPSET, SPECS, make_manifest
from training import tiers_eval
from training.data import MultimodalDataset
from training.evaluate import OnnxModel, SubsetPasses, evaluate_model
from training.metrics import (
    agreement_flags,
    bootstrap,
    calibration,
    donors,
    ece,
    paired_difference,
    reliability,
)
from training.tiers_eval import evaluate_model_tiers, evaluate_repository, load_eval_tiers

ALL = ["image", "audio", "text"]
READ = {"image": (1 / 20, 0.0), "audio": (10.0, 0.0), "text": (1.0, -48.0)}  # class = round(x0 * a + b)


def oracle(modalities: list[str], gains: dict[str, float]) -> onnx.ModelProto:
    """logits = sum over present modalities of gain * one_hot(class read from that input)."""
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    depth = const("depth", np.array(10, np.int64))
    const("zero_idx", np.array([0], np.int64))
    parts = []
    for j, m in enumerate(modalities):
        a, b = READ[m]
        flat = [f"{m}_flat", f"{m}_x0", f"{m}_f", f"{m}_a", f"{m}_b", f"{m}_r", f"{m}_i", f"{m}_1d"]
        nodes += [
            helper.make_node("Flatten", [m], [flat[0]], axis=1),
            helper.make_node("Gather", [flat[0], "zero_idx"], [flat[1]], axis=1),
            helper.make_node("Cast", [flat[1]], [flat[2]], to=TensorProto.FLOAT),
            helper.make_node("Mul", [flat[2], const(f"{m}_scale", np.array(a, np.float32))], [flat[3]]),
            helper.make_node("Add", [flat[3], const(f"{m}_off", np.array(b, np.float32))], [flat[4]]),
            helper.make_node("Round", [flat[4]], [flat[5]]),
            helper.make_node("Cast", [flat[5]], [flat[6]], to=TensorProto.INT64),
            helper.make_node("Squeeze", [flat[6], const(f"{m}_ax", np.array([1], np.int64))], [flat[7]]),
        ]
        values = const(f"{m}_values", np.array([0.0, gains.get(m, 1.0)], np.float32))
        nodes.append(helper.make_node("OneHot", [flat[7], depth, values], [f"{m}_vote"], axis=-1))
        vote = f"{m}_vote"
        if len(modalities) > 1:
            col = [const(f"{m}_s{k}", np.array([v], np.int64)) for k, v in enumerate((j, j + 1, 1))]
            nodes.append(helper.make_node("Slice", ["mask", *col], [f"{m}_mask"]))
            nodes.append(helper.make_node("Mul", [vote, f"{m}_mask"], [f"{m}_masked"]))
            vote = f"{m}_masked"
        parts.append(vote)
    nodes.append(helper.make_node("Sum", parts, ["logits"]))
    names = [*modalities, "mask"] if len(modalities) > 1 else modalities
    shapes = {"image": [28, 28], "audio": [16000], "text": [64], "mask": [3]}
    inputs = [helper.make_tensor_value_info(n, ONNX_TYPES[SPECS[n].dtype], ["B", *shapes[n]]) for n in names]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 10])]
    model = helper.make_model(
        helper.make_graph(nodes, "oracle", inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    return model


def write_oracle(root: Path, name: str, fusion: str, modalities: list[str], **gains: float) -> Path:
    target = root / name / "1"
    target.mkdir(parents=True)
    onnx.save(oracle(modalities, gains), target / "model.onnx")
    manifest = make_manifest(name, 1, modalities, fusion=fusion)
    manifest.model_copy(update={"onnx_sha256": sha256_file(target / "model.onnx")}).write(
        target / "manifest.json"
    )
    return target


def dataset(
    labels: np.ndarray, *, wrong: dict[str, np.ndarray] | None = None, mask: np.ndarray | None = None
) -> MultimodalDataset:
    """Inputs that encode ``labels``; ``wrong[m]`` rows of modality ``m`` encode label + 1 instead."""
    n = len(labels)
    per = {m: labels.copy() for m in ALL}
    for m, rows in (wrong or {}).items():
        per[m][rows] = (per[m][rows] + 1) % 10
    image = np.zeros((n, 28, 28), np.uint8)
    image[:, 0, 0] = per["image"] * 20
    audio = np.zeros((n, 16000), np.float32)
    audio[:, 0] = per["audio"] / 10
    text = np.zeros((n, 64), np.uint8)
    text[:, 0] = per["text"] + 48
    return MultimodalDataset(
        image=image, audio=audio, text=text,
        mask=np.ones((n, 3), np.float32) if mask is None else mask,
        label=labels.astype(np.int64), labels=[str(i) for i in range(10)],
        split=np.full(n, 2, np.int8), texts=[str(v) for v in per["text"]], fingerprint="fake",
    )  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("oracles")
    return [
        write_oracle(root, "late", "late", ALL),
        write_oracle(root, "gated", "gated", ALL, audio=3.0),  # the audio bully
        write_oracle(root, "image_only", "unimodal", ["image"]),
        write_oracle(root, "audio_only", "unimodal", ["audio"]),
        write_oracle(root, "text_only", "unimodal", ["text"]),
    ]


@pytest.fixture(scope="module")
def result(repo: list[Path]) -> dict:
    labels = np.arange(200) % 10
    rows = np.arange(200)
    tiers = {
        "benchmark": dataset(labels, wrong={"image": rows[:50], "audio": rows[50:80]}),
        "clean": dataset(labels),
        "unseen_speakers": dataset(labels, wrong={"audio": rows[:20]}),
        "people_images": dataset(labels, wrong={"image": rows[:40]}),
    }
    return evaluate_repository(repo, tiers, seed=0, n_boot=200)


def test_models_are_listed_fusions_first_with_every_tier(result: dict) -> None:
    assert list(result["models"]) == ["late", "gated", "image_only", "audio_only", "text_only"]
    assert result["tiers"] == {"benchmark": 200, "clean": 200, "unseen_speakers": 200, "people_images": 200}
    for m in result["models"].values():
        assert set(m["tiers"]) == set(result["tiers"])


def test_tier_accuracies_have_closed_forms(result: dict) -> None:
    late, gated, models = result["models"]["late"], result["models"]["gated"], result["models"]
    assert late["tiers"]["clean"]["accuracy"]["value"] == 1.0
    assert late["tiers"]["benchmark"]["accuracy"]["value"] == 1.0  # one wrong vote never wins 2 to 1
    assert gated["tiers"]["benchmark"]["accuracy"]["value"] == pytest.approx(170 / 200)  # audio wins
    assert models["image_only"]["tiers"]["benchmark"]["accuracy"]["value"] == pytest.approx(150 / 200)
    assert late["tiers"]["unseen_speakers"]["audio_only"]["value"] == pytest.approx(180 / 200)
    assert late["tiers"]["people_images"]["image_only"]["value"] == pytest.approx(160 / 200)
    assert late["tiers"]["clean"]["image_only"]["value"] == 1.0
    assert models["audio_only"]["headline"]["unseen_audio_only"] == pytest.approx(0.9)


def test_intervals_hold_the_value_and_are_seeded(result: dict, repo: list[Path]) -> None:
    stat = result["models"]["image_only"]["tiers"]["benchmark"]["accuracy"]
    lo, hi = stat["ci"]
    assert lo < stat["value"] < hi and stat["n"] == 200
    assert 0.6 < lo and hi < 0.9  # +-6 points for p=0.75 at n=200


def test_conflict_table_follows_the_majority_unless_a_modality_bullies(result: dict) -> None:
    late = result["models"]["late"]["tiers"]["clean"]["conflict"]
    gated = result["models"]["gated"]["tiers"]["clean"]["conflict"]
    for m in ALL:
        assert late["swapped"][m]["follow_agreeing"]["value"] == 1.0
        assert late["swapped"][m]["follow_swapped"]["value"] == 0.0
        assert late["swapped"][m]["flagged"]["value"] == 1.0  # the swapped opinion rules the answer out
        assert late["swapped"][m]["names_another"]["value"] == 1.0
    assert gated["swapped"]["audio"]["follow_swapped"]["value"] == 1.0
    assert gated["swapped"]["image"]["follow_agreeing"]["value"] == 1.0
    assert late["clean_flagged"]["value"] == 0.0 and late["swapped_flagged"]["value"] == 1.0
    assert gated["follow_agreeing"] == {"value": pytest.approx(2 / 3, abs=1e-4), "min": 0.0}
    assert "conflict" not in result["models"]["image_only"]["tiers"]["clean"]


def test_margins_are_paired_against_the_matching_baseline(result: dict) -> None:
    margins = result["models"]["gated"]["margins"]
    assert set(margins) == {"image", "audio", "text", "image+audio", "image+text", "audio+text"}
    # image alone: gated's image branch is the image oracle, so it ties image_only on every sample
    assert margins["image"]["baseline"] == "image_only"
    assert margins["image"]["value"] == 0.0 and margins["image"]["ci"] == [0.0, 0.0]
    # image+audio: audio (gain 3) decides, so gated matches audio_only (85%), the better baseline
    assert margins["image+audio"]["baseline"] == "audio_only" and margins["image+audio"]["value"] == 0.0
    # image+text: a 1-1 tie goes to the lower class, the true one unless a wrong image of a 9 reads 0
    assert margins["image+text"]["baseline"] == "text_only"
    assert margins["image+text"]["value"] == pytest.approx(-5 / 200)


def test_the_headline_gap_is_paired_on_the_complete_rows(result: dict) -> None:
    gap = result["gap"]  # late is always right; the best baseline, text_only, too: no gap
    assert (gap["fusion"], gap["unimodal"]) == ("late", "text_only")
    assert gap["value"] == 0.0 and gap["n"] == 200


def test_branches_are_calibrated_per_modality_for_fusions_only(result: dict) -> None:
    branches = result["models"]["late"]["tiers"]["benchmark"]["branches"]
    assert set(branches) == set(ALL)
    assert branches["text"]["accuracy"] == 1.0
    assert result["models"]["text_only"]["tiers"]["benchmark"]["branches"] == {}


def test_missing_rows_are_left_out_of_subsets(repo: list[Path]) -> None:
    labels = np.arange(40) % 10
    mask = np.ones((40, 3), np.float32)
    mask[:10, 1] = 0  # no audio in the first 10 rows
    tiers = {"benchmark": dataset(labels, mask=mask), "clean": dataset(labels, mask=mask)}
    out = evaluate_repository(repo[:1], tiers, n_boot=50)
    subsets = out["models"]["late"]["tiers"]["benchmark"]["subsets"]
    assert subsets["audio"]["n"] == 30 and subsets["image"]["n"] == 40
    assert subsets["image+audio+text"]["n"] == 30
    conflict = out["models"]["late"]["tiers"]["clean"]["conflict"]  # complete rows only
    assert (
        conflict["clean_flagged"]["n"] == 30 and conflict["swapped"]["audio"]["follow_agreeing"]["value"] == 1
    )


@pytest.mark.parametrize("complete", [True, False])
def test_numbers_handed_back_by_training_workers_are_the_ones_made_in_one_place(
    repo: list[Path], complete: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--jobs`` workers evaluate the model they trained (side by side, then on the tiers, with the
    benchmark passes shared between the two) and hand the tier numbers back: the report gets
    exactly what evaluating every model in the run's own process gives."""
    labels = np.arange(60) % 10
    mask = np.ones((60, 3), np.float32)
    if not complete:
        mask[:12, 1] = 0  # rows without audio: the shared pass is not the model's full-mask pass
    wrong = {"image": np.r_[0:6, 10:25], "text": np.arange(6)}  # rows 0-5: two wrong votes agree
    test = dataset(labels, wrong=wrong, mask=mask)
    tiers = {"benchmark": test, "clean": dataset(labels, mask=mask)}
    arrays = {"image": test.image, "audio": test.audio, "text": test.text}
    done = {}
    for d in repo:
        alone = evaluate_model(d, test, params=1, train_seconds=1.0)
        passes = SubsetPasses(OnnxModel(d), test)
        shared = evaluate_model(d, test, params=1, train_seconds=1.0, passes=passes)
        assert {**shared.metrics(), "latency_ms": 0} == {**alone.metrics(), "latency_ms": 0}
        # against one plain run over every row, each with what it has of the model's modalities
        own = np.array([m in alone.modalities for m in ALL], np.float32)
        present = (mask * own).sum(axis=1) > 0
        pred = passes.model.predict(arrays, mask * own)
        assert alone.accuracy == round(float((pred == labels)[present].mean()), 4)
        done[d] = evaluate_model_tiers(d, tiers, seed=0, n_boot=50, benchmark=passes)
    in_one_place = evaluate_repository(repo, tiers, n_boot=50)
    with monkeypatch.context() as m:  # the handed-back numbers are used, not made again
        m.setattr(tiers_eval, "evaluate_model_tiers", _must_not_run)
        handed_back = evaluate_repository(repo, tiers, n_boot=50, done=done)
    assert handed_back == in_one_place


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("a model with numbers handed back was evaluated again")


def test_a_user_data_set_has_only_the_benchmark_tier() -> None:
    test = dataset(np.arange(10))
    assert load_eval_tiers("my/manifest.jsonl", test) == {"benchmark": test}


def test_donors_are_always_of_another_class() -> None:
    labels = np.repeat(np.arange(5), 7)
    d = donors(labels, np.random.default_rng(0))
    assert d is not None and (labels[d] != labels).all()
    assert donors(np.zeros(5, np.int64), np.random.default_rng(0)) is None


def test_ece_of_known_cases() -> None:
    conf = np.full(100, 0.9)
    correct = np.arange(100) < 60
    assert ece(conf, correct) == pytest.approx(0.3)
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 50_000)
    assert ece(conf, rng.random(50_000) < conf) < 0.01  # calibrated by construction
    curve = reliability(conf, rng.random(50_000) < conf)
    assert len(curve["confidence"]) == 14  # [0.1, 1.0] fills 14 of the 15 bins
    assert len(curve["count"]) == 14 and sum(curve["count"]) == 50_000
    assert np.allclose(curve["confidence"], curve["accuracy"], atol=0.03)


def test_calibration_of_logits() -> None:
    logits = np.log(np.array([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.3, 0.7]]))
    cal = calibration(logits, np.array([0, 1, 1, 1]))
    assert cal["accuracy"] == 0.75 and cal["confidence"] == pytest.approx(0.75)
    assert cal["ece"] == pytest.approx((2 * 0.3 + 2 * 0.3) / 4)


def test_bootstrap_and_paired_difference() -> None:
    hits = np.arange(1000) % 4 != 0  # 75%
    a, b = bootstrap(hits, seed=1), bootstrap(hits, seed=1)
    assert a == b and a["value"] == 0.75 and a["ci"][0] < 0.75 < a["ci"][1]
    worse = hits.copy()
    worse[:100] = False  # 75 hits lost of 1000: -7.5 points
    diff = paired_difference(worse, hits)
    assert diff["value"] == pytest.approx(-0.075) and diff["significant_loss"]
    assert not paired_difference(hits, hits)["significant_loss"]
    assert bootstrap(np.array([]))["n"] == 0


def test_the_agreement_flag_is_a_modality_ruling_the_fused_label_out() -> None:
    """The server's rule: naming another label is not enough; giving the fused one < 10% is."""
    p = [
        np.array([[0.8, 0.2], [0.8, 0.2], [0.8, 0.2], [0.8, 0.2]]),
        np.array([[0.7, 0.3], [0.4, 0.6], [0.05, 0.95], [0.1, 0.9]]),
    ]
    flagged, names_another = agreement_flags(p, np.zeros(4, np.int64))
    assert flagged.tolist() == [False, False, True, False]  # 0.1 itself does not rule out
    assert names_another.tolist() == [False, True, True, True]
