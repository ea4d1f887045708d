"""Targets checked and the "how to choose" advice, both computed from the tier evaluation.

No sentence here is written in advance: each names the model and the number that make it
true on this run, so a retrain that changes the ranking changes the advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from training.tiers_report import BRANCHED, CONFLICT_TARGET, ECE_TARGET, MISSING_LOSS_WHY, Ev, ci

Target = tuple[str, bool, str]


def _value(m: Mapping[str, Any], tier: str, key: str = "accuracy") -> float | None:
    stat = m["tiers"].get(tier, {}).get(key)
    return float(stat["value"]) if stat and stat.get("n") else None


def _by_model(models: Mapping[str, Any], tier: str, key: str = "accuracy") -> dict[str, float]:
    """``{model: value}`` for the models that measured ``key`` on ``tier``."""
    return {n: v for n, m in models.items() if (v := _value(m, tier, key)) is not None}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ece(m: Mapping[str, Any]) -> float | None:
    cal = m["tiers"].get("benchmark", {}).get("calibration")
    return float(cal["ece"]) if cal else None


def _conflict(m: Mapping[str, Any]) -> Mapping[str, Any] | None:
    c: Mapping[str, Any] | None = m["tiers"].get("clean", {}).get("conflict") or None
    return c


def _losses(m: Mapping[str, Any]) -> list[str]:
    return [
        f"{s} vs `{d['baseline']}` {100 * d['value']:+.1f}"
        for s, d in m.get("margins", {}).items()
        if d["significant_loss"]
    ]


def targets(ev: Ev) -> list[Target]:
    """The targets of the real-inputs and trust issues, each with the numbers behind the verdict."""
    models = ev["models"]
    fusions = {n: m for n, m in models.items() if m["fusion"] != "unimodal"}
    rows: list[Target] = []
    audio = _by_model(models, "unseen_speakers", "audio_only")
    if audio:
        best = max(audio, key=lambda n: audio[n])
        rows.append(
            ("unseen voices, audio alone >= 85%", audio[best] >= 0.85, f"best `{best}` {_pct(audio[best])}%")
        )
    clean = _by_model(fusions, "clean")
    if clean:
        detail = ", ".join(f"`{n}` {_pct(v)}" for n, v in clean.items())
        rows.append(
            ("clean tier, all three modalities >= 99% (every fusion)", min(clean.values()) >= 0.99, detail)
        )
    gap = ev.get("gap") or {}
    if gap.get("n"):
        best = fusions[gap["fusion"]]["tiers"]["benchmark"]["subsets"]["image+audio+text"]
        lo, hi = gap["ci"]
        rows.append(
            (
                "noisy benchmark: best fusion >= 92% and >= best unimodal + 15 points",
                best["value"] >= 0.92 and gap["value"] >= 0.15,
                f"`{gap['fusion']}` {ci(best)} vs `{gap['unimodal']}`: {100 * gap['value']:+.1f} "
                f"[{100 * lo:+.1f}, {100 * hi:+.1f}] points (paired)",
            )
        )
    for name in BRANCHED:
        c = _conflict(models.get(name, {"tiers": {}}))
        if c:
            fa = c["follow_agreeing"]
            rows.append(
                (
                    f"{name}: one modality swapped, follows the agreeing two >= 95%",
                    fa["value"] >= CONFLICT_TARGET,
                    f"mean over swaps {_pct(fa['value'])}%, worst {_pct(fa['min'])}%",
                )
            )
    eces = {n: v for n, m in models.items() if (v := _ece(m)) is not None}
    if eces:
        worst = max(eces, key=lambda n: eces[n])
        over = [n for n, v in eces.items() if v > ECE_TARGET]
        detail = f"worst `{worst}` {_pct(eces[worst])}%" + (f"; above: {', '.join(over)}" if over else "")
        rows.append(("ECE <= 3% for every served model (benchmark tier)", not over, detail))
    ratios = {}
    for n, m in models.items():
        people, base = _value(m, "people_images", "image_only"), _value(m, "clean", "image_only")
        if people is not None and base:
            ratios[n] = people / base
    if ratios:
        worst = min(ratios, key=lambda n: ratios[n])
        rows.append(
            (
                "people's images (inverted, off-centre) >= 95% of the clean image accuracy",
                ratios[worst] >= 0.95,
                f"worst `{worst}` {100 * ratios[worst]:.0f}%",
            )
        )
    if any(m.get("margins") for m in fusions.values()):
        losers = {n: ls for n, m in fusions.items() if (ls := _losses(m))}
        losses = [f"`{n}`: {'; '.join(ls)}" for n, ls in losers.items()]
        unexplained = [f"`{n}`" for n in losers if fusions[n]["fusion"] not in MISSING_LOSS_WHY]
        if not losers:
            measured = "no significant loss"
        else:
            why = f"unexplained: {', '.join(unexplained)}" if unexplained else "each explained in the report"
            measured = f"significant losses ({why}): " + " | ".join(losses)
        rows.append(
            (
                "one or two modalities missing: within 1 point of, or above, the matching baseline, "
                "or a significant loss the report explains",
                not unexplained,
                measured,
            )
        )
    flags = {n: c for n, m in fusions.items() if (c := _conflict(m)) and "clean_flagged" in c}
    if flags:
        ok = all(
            c["swapped_flagged"]["value"] >= 0.95 and c["clean_flagged"]["value"] <= 0.05
            for c in flags.values()
        )
        detail = "; ".join(
            f"`{n}` swapped {_pct(c['swapped_flagged']['value'])}, clean {_pct(c['clean_flagged']['value'])}"
            for n, c in flags.items()
        )
        rows.append(("agreement flag: >= 95% of swapped cases, <= 5% of clean agreeing ones", ok, detail))
    return rows


def choose(ev: Ev) -> list[str]:
    """Advice keyed on measured facts: which model is best at what, and which one to serve."""
    fusions = {n: m for n, m in ev["models"].items() if m["fusion"] != "unimodal"}
    if not fusions:
        return []
    lines: list[str] = []
    for tier, what in (("benchmark", "noisy inputs (benchmark)"), ("clean", "clean inputs")):
        acc = _by_model(fusions, tier)
        if not acc:
            continue
        best = max(acc, key=lambda n: acc[n])
        lo = fusions[best]["tiers"][tier]["accuracy"]["ci"][0]
        tied = [n for n in acc if n != best and fusions[n]["tiers"][tier]["accuracy"]["ci"][1] >= lo]
        tie = f"; its 95% interval overlaps that of {', '.join(f'`{n}`' for n in tied)}" if tied else ""
        lines.append(f"- **Best on {what}:** `{best}` ({_pct(acc[best])}%){tie}.")
    lines += _real_inputs(ev)
    conflicts = {n: c for n, m in fusions.items() if (c := _conflict(m))}
    if conflicts:
        steady = max(conflicts, key=lambda n: conflicts[n]["follow_agreeing"]["value"])
        swayed = max(conflicts, key=lambda n: conflicts[n]["follow_swapped"]["value"])
        lines.append(
            f"- **When one modality contradicts the others:** `{steady}` follows the agreeing two most often "
            f"({_pct(conflicts[steady]['follow_agreeing']['value'])}%); `{swayed}` is swayed by the "
            f"odd one out most often ({_pct(conflicts[swayed]['follow_swapped']['value'])}%)."
        )
    eces = {n: v for n, m in ev["models"].items() if (v := _ece(m)) is not None}
    if eces:
        best = min(eces, key=lambda n: eces[n])
        over = [f"`{n}`" for n, v in eces.items() if v > ECE_TARGET]
        tail = (
            f"; trust the probabilities of {', '.join(over)} less (ECE > 3%)" if over else "; all within 3%"
        )
        lines.append(f"- **Best calibrated:** `{best}` (ECE {_pct(eces[best])}%){tail}.")
    losers = {n: ls for n, m in fusions.items() if (ls := _losses(m))}
    if losers:
        detail = "; ".join(f"`{n}` ({', '.join(ls)})" for n, ls in losers.items())
        lines.append(f"- **With modalities missing, prefer the unimodal baseline over:** {detail}.")
    elif any(m.get("margins") for m in fusions.values()):
        lines.append(
            "- **With modalities missing:** no fusion is significantly worse than the matching baseline."
        )
    lines.append(f"- **Default recommendation:** {_recommend(fusions, conflicts, eces, losers)}")
    return lines


def _real_inputs(ev: Ev) -> list[str]:
    """The unseen-voice and people's-image facts: what a new user's own inputs will meet."""
    lines = []
    audio = _by_model(ev["models"], "unseen_speakers", "audio_only")
    if audio:
        best = max(audio, key=lambda n: audio[n])
        lines.append(
            f"- **A voice it never heard (audio alone):** `{best}` ({_pct(audio[best])}%); "
            f"the worst audio path is `{min(audio, key=lambda n: audio[n])}` ({_pct(min(audio.values()))}%)."
        )
    people = _by_model(ev["models"], "people_images", "image_only")
    if people:
        best = max(people, key=lambda n: people[n])
        lines.append(
            f"- **Digits drawn as people draw them (image alone):** `{best}` ({_pct(people[best])}%)."
        )
    return lines


def _recommend(
    fusions: Mapping[str, Any],
    conflicts: Mapping[str, Any],
    eces: Mapping[str, float],
    losers: Mapping[str, Any],
) -> str:
    """The fusion that misses the fewest behaviour targets, the more accurate one on a tie."""
    checks = {
        n: [
            *(
                ["is swayed by a contradicting modality"]
                if n in conflicts and conflicts[n]["follow_agreeing"]["value"] < CONFLICT_TARGET
                else []
            ),
            *(["is over- or under-confident"] if eces.get(n, 0.0) > ECE_TARGET else []),
            *(["loses to a baseline with modalities missing"] if n in losers else []),
        ]
        for n in fusions
    }
    acc = {n: _value(m, "benchmark") or 0.0 for n, m in fusions.items()}
    pick = min(fusions, key=lambda n: (len(checks[n]), -acc[n]))
    if not checks[pick]:
        return (
            f"`{pick}`: the most accurate on the benchmark ({_pct(acc[pick])}%) of the fusions that meet "
            "the conflict, calibration and missing-modality targets."
        )
    text = (
        f"`{pick}` ({_pct(acc[pick])}% on the benchmark): no fusion meets every conflict, calibration and "
        f"missing-modality target, and it misses the fewest ({len(checks[pick])} of 3: it "
        f"{_and(checks[pick])})"
    )
    most = max(acc, key=lambda n: acc[n])
    if acc[most] > acc[pick]:
        text += f"; `{most}` is more accurate ({_pct(acc[most])}%) but {_and(checks[most])}"
    return text + "."


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
