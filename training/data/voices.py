"""Who speaks the digits: every offline English voice installable here, grouped by speaker.

A voice is one engine's rendering (``flite kal16``); a speaker is the person behind it. Hold-out
is by speaker, not by engine: flite's kal/kal16 and festival's kal_diphone are one man, flite's
slt and festival's cmu_us_slt_arctic_hts one woman, so a held-out speaker is never heard in
training through another engine. The held-out speakers' clips form the "unseen speakers" tier,
the measurable proxy for a human voice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

ESPEAK_VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "anika", "anikaRobot", "Annie", "announcer", "antonio",
    "AnxiousAndy", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "Demonic", "Denis",
    "Diogo", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "Gene", "Gene2", "grandma",
    "grandpa", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Lee", "linda", "m1", "m2",
    "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel",
    "Mike", "Mr serious", "Nguyen", "norbert", "pablo", "paul", "pedro", "quincy", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4",
    "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3",
    "Storm", "travis", "Tweaky", "UniRobot", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip
"""The 101 voice variants of espeak-ng 1.51 (``espeak-ng --voices=variant``)."""
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp",
    "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)  # fmt: skip
ENGINES = ("espeak", "flite", "festival", "kokoro")
"""Speech engines; a sample's ``engine`` info column indexes this tuple."""
ESPEAK_SPLIT = {"train": 71, "val": 10, "test": 20}
"""espeak-ng variants per split (drawn from the seed); val and test variants are never trained on."""


@dataclass(frozen=True)
class Voice:
    """One engine's voice and the person behind it."""

    engine: str
    name: str
    speaker: str

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


NATURAL_VOICES = (
    Voice("flite", "kal", "kal"),
    Voice("flite", "kal16", "kal"),
    Voice("festival", "kal_diphone", "kal"),
    Voice("flite", "slt", "slt"),
    Voice("festival", "cmu_us_slt_arctic_hts", "slt"),
    Voice("flite", "awb", "awb"),
    Voice("flite", "rms", "rms"),
    Voice("festival", "ked_diphone", "ked"),
    Voice("kokoro", "jf_alpha", "kokoro_jf_alpha"),
    Voice("kokoro", "jm_kumo", "kokoro_jm_kumo"),
    Voice("kokoro", "jf_tebukuro", "kokoro_jf_tebukuro"),
    Voice("kokoro", "jf_nezumi", "kokoro_jf_nezumi"),
    Voice("kokoro", "jf_gongitsune", "kokoro_jf_gongitsune"),
)
"""Recorded-speaker voices (diphone, clustergen, HTS) and neural voices (Kokoro-82M)."""
NATURAL_SPLIT = {
    "train": ("kal", "slt", "kokoro_jf_alpha", "kokoro_jm_kumo", "kokoro_jf_tebukuro"),
    "val": ("kokoro_jf_nezumi",),
    "test": ("awb", "rms", "ked", "kokoro_jf_gongitsune"),
}
"""Speakers per split, fixed (there are too few to draw): test speakers are the unseen tier."""
VOICES: tuple[Voice, ...] = tuple(Voice("espeak", v, f"espeak_{v}") for v in ESPEAK_VARIANTS) + NATURAL_VOICES
"""Every voice; a sample's ``voice`` info column indexes this tuple."""
SPEAKERS: tuple[str, ...] = tuple(dict.fromkeys(v.speaker for v in VOICES))
"""Every speaker; a sample's ``speaker`` info column indexes this tuple."""
NATURAL_SHARE = 0.5
"""Share of train and val clips spoken by a natural voice (the rest by espeak-ng variants)."""


@cache
def espeak_pools(seed: int) -> dict[int, np.ndarray]:
    """Indices into :data:`ESPEAK_VARIANTS` for each split (disjoint, drawn from ``seed``)."""
    perm = np.random.default_rng([seed, 1]).permutation(len(ESPEAK_VARIANTS))
    n_train, n_val, _ = ESPEAK_SPLIT.values()
    parts = np.split(perm, [n_train, n_train + n_val])
    return {s: np.sort(part) for s, part in enumerate(parts)}


@cache
def natural_pools() -> dict[int, np.ndarray]:
    """Indices into :data:`VOICES` of the natural voices of each split's speakers."""
    return {
        s: np.array([i for i, v in enumerate(VOICES) if v.engine != "espeak" and v.speaker in speakers])
        for s, speakers in enumerate(NATURAL_SPLIT.values())
    }


def speaker_pools(seed: int) -> dict[int, set[str]]:
    """Speaker names of each split (espeak variants and natural speakers); disjoint."""
    esp = espeak_pools(seed)
    return {
        s: {VOICES[int(i)].speaker for i in esp[s]} | set(names)
        for s, names in enumerate(NATURAL_SPLIT.values())
    }


def speaker_index(voice: np.ndarray) -> np.ndarray:
    """The :data:`SPEAKERS` index of each :data:`VOICES` index."""
    table = np.array([SPEAKERS.index(v.speaker) for v in VOICES], dtype=np.int16)
    return table[np.asarray(voice, dtype=np.int64)]
