"""The second built-in data set: coloured shapes seen, heard and read (training/data/shapes.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.media import decode_image
from training.data import MultimodalDataset, load_dataset
from training.data.shapes import LABELS, NOUNS, SPEC, attributes, build, draw
from training.data.voices import espeak_pools

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="the shapes' speech needs espeak-ng"
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> MultimodalDataset:
    return load_dataset("shapes", limit=54, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_arrays_follow_the_shapes_spec(small: MultimodalDataset) -> None:
    ds = small
    assert ds.spec == SPEC and ds.spec.summary() == "48x48 RGB, 1.5 s at 16000 Hz, 128 bytes"
    assert ds.image.shape == (54, 48, 48, 3) and ds.audio.shape == (54, 24_000)
    assert ds.text.shape == (54, 128) and (ds.mask == 1).all()
    assert len(ds.labels) == 18 and np.abs(ds.audio).max() > 0.05


def test_each_modality_carries_two_of_the_three_attributes() -> None:
    """Pictures show colour and shape: a red circle is red where it is drawn, for every shape."""
    rng = np.random.default_rng(0)
    for label in range(len(LABELS)):
        colour, shape, direction = attributes(label)
        assert LABELS[label] == f"{colour} {shape} {direction}"
        assert shape in NOUNS and direction in ("left", "right")
    red = decode_image(draw("red", "circle", rng), size=48, channels=3, normalize=False).reshape(-1, 3)
    saturated = red[(red.max(axis=1) > 150)]
    assert len(saturated) and (saturated[:, 0] > saturated[:, 1] + 60).mean() > 0.8


def test_test_voices_are_never_heard_in_training(small: MultimodalDataset) -> None:
    ds = small
    pools = espeak_pools(0)
    for split in (0, 2):
        rows = np.flatnonzero(ds.split == split)
        assert set(ds.info["voice"][rows].tolist()) <= set(pools[split].tolist())


def test_the_build_is_deterministic(tmp_path: Path) -> None:
    assert (
        build(3, 18, workers=1, progress=False).fingerprint
        == build(3, 18, workers=1, progress=False).fingerprint
    )


def test_the_shapes_set_has_its_own_spec() -> None:
    with pytest.raises(ValueError, match="own input spec"):
        load_dataset("shapes", limit=18, spec={"image_size": 64})
