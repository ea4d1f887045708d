"""app.explain alone: Shapley values against closed forms, coalition rows, agreement, abstention."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest

from app.agreement import RULES_OUT_BELOW, abstention, agreement
from app.explain import (
    EMPTY,
    AnswerPlan,
    ExplainMethod,
    bit_set,
    explain_sample,
    members,
    shapley,
)
from app.inputs import assemble
from tests.app import fakes

IMAGE, AUDIO, TEXT = 1, 2, 4
PLAYERS = [IMAGE, AUDIO, TEXT]
LATE = fakes.make_manifest("late", 1, fakes.ALL)
UNIMODAL = fakes.make_manifest("image_only", 1, ["image"])
LABELS = fakes.LABELS


def game(v: Callable[[int], float], players: list[int]) -> dict[int, float]:
    """The value of every coalition of ``players``."""
    full = sum(players)
    return {s: v(s) for s in range(full + 1) if s & ~full == 0}


def by_permutations(value: dict[int, float], players: list[int]) -> dict[int, float]:
    """Shapley's definition itself: the mean marginal contribution over every order of arrival."""
    phi = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        s = 0
        for p in order:
            phi[p] += (value[s | p] - value[s]) / len(orders)
            s |= p
    return phi


def test_additive_game_gives_each_player_its_own_term() -> None:
    terms = {IMAGE: 1.5, AUDIO: -0.25, TEXT: 0.7}
    value = game(lambda s: 2.0 + sum(t for p, t in terms.items() if s & p), PLAYERS)
    assert shapley(value, PLAYERS) == pytest.approx(terms, abs=1e-12)


def test_unanimity_game_splits_evenly() -> None:
    for players in ([IMAGE, TEXT], PLAYERS):
        full = sum(players)
        phi = shapley(game(lambda s, full=full: float(s == full), players), players)
        assert phi == pytest.approx(dict.fromkeys(players, 1 / len(players)))


def test_matches_the_permutation_definition_and_is_efficient() -> None:
    rng = np.random.default_rng(0)
    for players in ([AUDIO], [IMAGE, TEXT], PLAYERS):
        value = {s: float(rng.normal()) for s in game(lambda s: 0.0, players)}
        phi = shapley(value, players)
        assert phi == pytest.approx(by_permutations(value, players), abs=1e-12)
        assert sum(phi.values()) == pytest.approx(value[sum(players)] - value[0], abs=1e-12)


def test_symmetric_and_dummy_players() -> None:
    # image and audio are interchangeable; text never changes the value
    value = game(lambda s: float(bool(s & IMAGE) + bool(s & AUDIO)) ** 2, PLAYERS)
    phi = shapley(value, PLAYERS)
    assert phi[IMAGE] == pytest.approx(phi[AUDIO]) and phi[TEXT] == pytest.approx(0.0)


def test_bit_sets_follow_the_mask_order() -> None:
    assert bit_set(["image", "text"]) == IMAGE | TEXT
    assert members(IMAGE | AUDIO | TEXT) == ["image", "audio", "text"] and members(0) == []


@pytest.mark.parametrize(
    ("method", "opinions", "present", "expected"),
    [
        ("shapley", False, ["image", "audio", "text"], {0, 1, 2, 3, 4, 5, 6}),
        ("shapley", False, ["audio"], {0}),
        ("shapley", False, ["image", "text"], {0, IMAGE, TEXT}),
        ("leave_one_out", False, ["image", "audio", "text"], {3, 5, 6}),
        ("leave_one_out", False, ["text"], set()),
        ("leave_one_out", True, ["image", "audio", "text"], {1, 2, 4, 3, 5, 6}),
        ("leave_one_out", True, ["image", "text"], {IMAGE, TEXT}),  # the leave-one-out rows are the opinions
    ],
)
def test_coalitions_each_once_full_row_excluded(
    method: ExplainMethod, opinions: bool, present: list[str], expected: set[int]
) -> None:
    plan = AnswerPlan(
        method=method,
        explain=True,
        opinions=opinions,
        min_confidence=0,
        abstain_on_conflict=False,
        masked=True,
    )
    assert plan.coalitions(present) == expected


def test_a_plain_request_adds_no_rows() -> None:
    plain = AnswerPlan.build(LATE, explain=False)
    assert not plain.extra_rows and plain.method is None
    assert AnswerPlan.build(LATE, explain=False, min_confidence=0.9).extra_rows is False
    assert AnswerPlan.build(LATE, explain=False, abstain_on_conflict=True).coalitions(["image", "text"]) == {
        IMAGE,
        TEXT,
    }
    unimodal = AnswerPlan.build(UNIMODAL, explain=True)
    assert unimodal.method is None and not unimodal.extra_rows


def test_assemble_runs_each_coalition_once_with_its_mask() -> None:
    rng = np.random.default_rng(1)
    decoded = [
        {
            "image": rng.integers(0, 255, (28, 28), dtype=np.uint8),
            "text": rng.integers(1, 255, 64, dtype=np.uint8),
        },
        {"audio": rng.normal(size=16000).astype(np.float32)},
    ]
    plan = AnswerPlan.build(LATE, explain=True)
    inputs, layout = assemble(LATE, decoded, plan.coalitions)
    assert len(inputs["mask"]) == 2 + 3 + 1  # samples, then {empty, image, text} and {empty}
    assert layout.rows[0][IMAGE | TEXT] == 0 and layout.rows[1][AUDIO] == 1
    for i, rows in enumerate(layout.rows):
        assert len(set(rows.values())) == len(rows)
        for coalition, r in rows.items():
            assert inputs["mask"][r].tolist() == [float(coalition >> j & 1) for j in range(3)]
            for j, m in enumerate(("image", "audio", "text")):
                expected = decoded[i][m] if coalition >> j & 1 else 0
                assert np.array_equal(inputs[m][r], np.zeros_like(inputs[m][r]) + expected)
    plain, plain_layout = assemble(LATE, decoded)
    assert len(plain["mask"]) == 2 and plain_layout.rows == [{IMAGE | TEXT: 0}, {AUDIO: 1}]


def opinion(label: str, p: float, fused: float) -> dict[str, object]:
    return {"label": label, "probability": p, "fused_label_probability": fused}


def test_agreement_names_the_dissenter_and_its_margin() -> None:
    agreed = agreement({"image": opinion("3", 0.9, 0.9), "text": opinion("3", 0.6, 0.6)}, "3")
    assert agreed == {"agree": True, "majority": "3", "dissenters": []}
    two_to_one = agreement(
        {"image": opinion("3", 0.9, 0.9), "audio": opinion("3", 0.8, 0.8), "text": opinion("5", 0.7, 0.05)},
        "3",
    )
    assert not two_to_one["agree"] and two_to_one["majority"] == "3"
    assert two_to_one["dissenters"] == [
        {
            "modality": "text",
            "label": "5",
            "probability": 0.7,
            "fused_label_probability": 0.05,
            "margin": 0.65,
            "rules_out": True,
        }
    ]
    # the fused answer is a class neither modality names: both dissent, no majority
    neither = agreement({"image": opinion("3", 0.9, 0.05), "audio": opinion("7", 0.8, 0.02)}, "0")
    assert neither["majority"] is None and [d["modality"] for d in neither["dissenters"]] == [
        "image",
        "audio",
    ]


def test_only_a_modality_that_rules_the_answer_out_breaks_agreement() -> None:
    """Naming another label while still giving the fused one a fair chance is a hard sample (one
    modality unsure), not a conflict: listed as a dissenter, but ``agree`` stays true."""
    unsure = {"image": opinion("3", 0.9, 0.9), "audio": opinion("8", 0.4, RULES_OUT_BELOW)}
    result = agreement(unsure, "3")
    assert result["agree"] and result["dissenters"][0]["rules_out"] is False
    just_below = {"image": opinion("3", 0.9, 0.9), "audio": opinion("8", 0.9, RULES_OUT_BELOW - 1e-6)}
    assert agreement(just_below, "3")["agree"] is False


def test_abstention_reasons() -> None:
    both_on = {"min_confidence": 0.6, "abstain_on_conflict": True}
    assert abstention(0.61, "3", True, **both_on) is None
    low = abstention(0.4, "3", True, **both_on)
    assert low is not None and low["reasons"] == ["low_confidence"] and low["label"] == "3"
    assert low["confidence"] == 0.4 and low["min_confidence"] == 0.6 and "0.400" in low["message"]
    both = abstention(0.4, "3", False, **both_on)
    assert both is not None and both["reasons"] == ["low_confidence", "conflict"]
    assert abstention(0.0, "3", False, min_confidence=0.0, abstain_on_conflict=False) is None
    assert abstention(0.9, "3", None, **both_on) is None  # no opinions (one modality): nothing to disagree
    plan = AnswerPlan.build(LATE, explain=True)
    assert not plan.may_abstain and math.isclose(plan.min_confidence, 0.0)
    assert AnswerPlan.build(LATE, explain=False, min_confidence=0.2).may_abstain


def test_a_known_empty_coalition_is_not_run_again() -> None:
    manifest = LATE.model_copy(update={"onnx_sha256": "ab" * 32, "name": "cached"})
    first = AnswerPlan.build(manifest, explain=True)
    assert first.empty is None and 0 in first.coalitions(["image", "text"])
    empty = np.log(np.full(10, 0.1))
    EMPTY.put(manifest, empty)
    second = AnswerPlan.build(manifest, explain=True)
    assert second.coalitions(["image", "text"]) == {IMAGE, TEXT}
    log_probs = np.log(np.array([[0.1] * 10, [0.05] * 9 + [0.55], [0.1] * 10]))  # full, image, text rows
    out = explain_sample(
        second, log_probs, {IMAGE | TEXT: 0, IMAGE: 1, TEXT: 2}, ["image", "text"], LABELS, 9
    )
    assert out["explanation"]["empty"] == pytest.approx(np.log(0.1))
    assert sum(out["contributions"].values()) == pytest.approx(0.0, abs=1e-6)  # full == empty here
    assert AnswerPlan.build(manifest, explain=True, method="leave_one_out").empty is None
    unsigned = LATE.model_copy(update={"onnx_sha256": "", "name": "unsigned"})
    EMPTY.put(unsigned, empty)  # no sha256, no way to tell a changed file: never cached
    assert AnswerPlan.build(unsigned, explain=True).empty is None
