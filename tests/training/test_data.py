"""The built-in digits: determinism, splits, held-out speakers, the cache, the CLI and export.

These tests run espeak-ng, flite, festival and (once per cache) npm and the Kokoro voices, like
CI does (`make sysdeps` installs the tools); a build of 60 samples takes a few seconds once the
Kokoro clips are cached.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from app.media import decode_image, encode_text, normalize_digit
from tests.media_fixtures import image_bytes
from training.cli import app
from training.data import MissingToolError, MultimodalDataset, digits, load_dataset, sources, tiers, voices
from training.data.manifest import export, load_manifest

N = 60
"""Samples in the shared small build (42 train, 6 val, 12 test)."""


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh data cache sharing the repository's MNIST digits and Kokoro clips (made once)."""
    shared = digits.default_cache_dir()
    sources.mnist_digits(shared)
    (shared / "tts").mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("data-cache")
    for name in (sources.MNIST_PACKAGE.replace("@", "-"), "tts"):
        os.symlink(shared / name, root / name)
    return root


@pytest.fixture(scope="session")
def built(cache_dir: Path) -> tuple[MultimodalDataset, dict[str, Any], dict[str, MultimodalDataset]]:
    return digits.build(0, N, cache_dir, progress=False)


@pytest.fixture(scope="session")
def small(built: tuple[MultimodalDataset, dict[str, Any], dict[str, MultimodalDataset]]) -> MultimodalDataset:
    return built[0]


def test_same_seed_same_bits_other_seed_other_data(cache_dir: Path, small: MultimodalDataset) -> None:
    again = digits.build(0, N, cache_dir, progress=False)[0]
    assert again.fingerprint == small.fingerprint
    for name in ("image", "audio", "text", "label", "split"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small, name))
    other = digits.build(1, 20, cache_dir, progress=False)[0]
    assert other.fingerprint != small.fingerprint


def test_a_sample_is_the_same_in_every_subset(cache_dir: Path, small: MultimodalDataset) -> None:
    """Per-sample generators: a limit build holds exactly the samples a bigger build holds."""
    bigger = digits.build(0, 2 * N, cache_dir, progress=False)[0]
    where = {int(k): i for i, k in enumerate(bigger.info["mnist_index"])}
    assert set(where) >= set(small.info["mnist_index"].tolist())
    rows = [where[int(k)] for k in small.info["mnist_index"]]
    for name in ("image", "audio", "text", "label", "split"):
        np.testing.assert_array_equal(getattr(bigger, name)[rows], getattr(small, name))


def test_shapes_dtypes_and_contents(small: MultimodalDataset) -> None:
    n = len(small)
    assert n == N and small.labels == [str(d) for d in range(10)]
    expected = {
        "image": (np.uint8, (n, 28, 28)),
        "audio": (np.float32, (n, 16000)),
        "text": (np.uint8, (n, 64)),
        "mask": (np.float32, (n, 3)),
        "label": (np.int64, (n,)),
        "split": (np.int8, (n,)),
    }
    for name, (dtype, shape) in expected.items():
        arr = getattr(small, name)
        assert arr.dtype == dtype and arr.shape == shape, name
    assert (small.mask == 1).all() and np.abs(small.audio).max() <= 1.0
    assert (np.abs(small.audio).max(axis=1) > 0.02).all()  # every clip holds sound (quiet ones too)
    assert (small.image.reshape(n, -1).std(axis=1) > 10).all()
    for i in range(n):
        np.testing.assert_array_equal(small.text[i], encode_text(small.texts[i]))
    assert len(set(small.texts)) > 30  # (corrupted) words in many languages, not ten strings


def test_full_split_assignment_is_exact_and_stratified() -> None:
    _, labels = sources.mnist_digits(digits.default_cache_dir())
    split = digits.assign_splits(labels, seed=0)
    assert np.bincount(split).tolist() == [7000, 1000, 2000]
    for c in range(10):
        share = np.bincount(split[labels == c], minlength=3) / (labels == c).sum()
        np.testing.assert_allclose(share, [0.7, 0.1, 0.2], atol=0.01)
    assert (digits.assign_splits(labels, seed=1) != split).any()


def test_limit_keeps_split_proportions_and_classes(small: MultimodalDataset) -> None:
    assert small.counts() == {"train": 42, "val": 6, "test": 12}
    assert len(np.unique(small.label[small.split == 0])) == 10
    assert len(np.unique(small.label[small.split == 2])) == 10


def test_each_mnist_digit_is_used_once(small: MultimodalDataset) -> None:
    index = small.info["mnist_index"]
    assert len(np.unique(index)) == len(index)


def test_subset_and_split_view(small: MultimodalDataset) -> None:
    test = small.split_view("test")
    assert len(test) == 12 and (test.split == 2).all()
    assert test.fingerprint != small.fingerprint
    assert test.fingerprint == small.split_view("test").fingerprint
    np.testing.assert_array_equal(test.audio, small.audio[small.split == 2])
    assert test.texts == [t for t, s in zip(small.texts, small.split, strict=True) if s == 2]
    with pytest.raises(ValueError, match="split must be one of"):
        small.split_view("holdout")  # type: ignore[arg-type]


def test_load_dataset_builds_once_then_reads_the_cache(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(seed=3, limit=30, cache_dir=cache_dir, progress=False)
    folder = cache_dir / digits.cache_key(3, 30)
    assert (folder / "meta.json").exists() and (folder / "audio.npy").exists()

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(digits, "build", no_build)
    cached = load_dataset(seed=3, limit=30, cache_dir=cache_dir, progress=False)
    assert cached.fingerprint == first.fingerprint and isinstance(cached.audio, np.memmap)
    np.testing.assert_array_equal(cached.audio, first.audio)
    assert cached.texts == first.texts


def test_missing_tools_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError, match="apt-get install espeak-ng flite festival"):
        digits.build(0, 10, tmp_path, progress=False)


def test_export_round_trip(small: MultimodalDataset, tmp_path: Path) -> None:
    manifest = export(small, tmp_path / "export", progress=False)
    back = load_manifest(manifest, progress=False)
    # images come back as the server reads the exported PNGs: through the (normalising) decoder
    pngs = sorted((tmp_path / "export" / "images").glob("*.png"))
    assert len(pngs) == len(small)
    expected = np.stack([decode_image(image_bytes(Image.fromarray(np.asarray(im)))) for im in small.image])
    np.testing.assert_array_equal(back.image, expected)
    np.testing.assert_allclose(back.audio, small.audio, atol=1.5 / 32768)  # 16-bit PCM
    for name in ("text", "mask", "label", "split"):
        np.testing.assert_array_equal(getattr(back, name), getattr(small, name))
    assert back.texts == small.texts and back.labels == small.labels


def test_cli_data_prints_the_fingerprint_and_exports(cache_dir: Path, tmp_path: Path) -> None:
    args = ["data", "--limit", "30", "--seed", "3", "--cache-dir", str(cache_dir), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    expected = load_dataset(seed=3, limit=30, cache_dir=cache_dir, progress=False).fingerprint
    assert f"fingerprint {expected}" in result.output
    assert len(list((tmp_path / "out" / "images").glob("*.png"))) == 30
    bad = CliRunner().invoke(app, ["data", "--data", str(tmp_path / "nope.jsonl")])
    assert bad.exit_code == 1 and "error: data source" in bad.output


def test_speakers_are_held_out_by_person_not_by_engine(
    small: MultimodalDataset, built: tuple[MultimodalDataset, dict[str, Any], dict[str, MultimodalDataset]]
) -> None:
    pools = voices.speaker_pools(seed=0)
    assert not pools[0] & pools[1] and not pools[0] & pools[2] and not pools[1] & pools[2]
    # one person, several engines: kal and slt are trained on through every engine that has them
    by_speaker: dict[str, set[str]] = {}
    for v in voices.VOICES:
        by_speaker.setdefault(v.speaker, set()).add(v.engine)
    assert by_speaker["kal"] == {"flite", "festival"} and by_speaker["slt"] == {"flite", "festival"}
    assert {"awb", "rms", "ked"} <= pools[2]
    speaker = np.asarray(small.info["speaker"])
    names = {s: {voices.SPEAKERS[i] for i in speaker[small.split == s]} for s in range(3)}
    for s in range(3):
        assert names[s] <= pools[s]
    unseen = built[2]["unseen_speakers"]
    heard = names[0] | names[1]
    assert {voices.SPEAKERS[i] for i in unseen.info["speaker"]} <= pools[2] and not heard & pools[2]
    engines = {voices.ENGINES[i] for i in small.info["engine"][small.split == 0]}
    assert engines == {"espeak", "flite", "festival", "kokoro"}  # every engine in training
    assert set(built[1]["voice_counts"]) == {"train", "val", "test", "unseen_speakers"}


def test_train_noise_starts_at_clean_test_noise_is_the_benchmark() -> None:
    rng = np.random.default_rng(0)
    train = np.stack([digits.draw_levels(0, rng) for _ in range(3000)])
    test = np.stack([digits.draw_levels(2, rng) for _ in range(3000)])
    for j, m in enumerate(("image", "audio", "text")):
        lo, hi = digits.NOISE_LEVELS[m]
        assert lo <= test[:, j].min() and test[:, j].max() <= hi
        assert (train[:, j] == 0).mean() == pytest.approx(digits.CLEAN_SHARE, abs=0.03)
        noisy = train[train[:, j] > 0, j]
        assert noisy.max() <= hi and noisy.min() < 0.05 * hi  # uniform from (nearly) clean up to max
        assert noisy.mean() == pytest.approx(hi / 2, rel=0.05)


def test_train_and_val_are_augmented_test_is_as_spoken(small: MultimodalDataset) -> None:
    aug, people_images = np.asarray(small.info["augmented"]), np.asarray(small.info["people"])
    assert aug[small.split < 2].mean() > 0.6 and not aug[small.split == 2].any()
    assert not people_images[small.split == 2].any()
    assert (np.asarray(small.info["audio_level"])[small.split < 2] == 0).any()  # some clean clips


def test_tiers_hold_the_same_test_samples(
    small: MultimodalDataset, built: tuple[MultimodalDataset, dict[str, Any], dict[str, MultimodalDataset]]
) -> None:
    found = built[2]
    test = small.split_view("test")
    assert set(found) == set(tiers.TIERS)
    mnist, _ = sources.mnist_digits(digits.default_cache_dir())
    for name, tier in found.items():
        assert len(tier) == len(test) and (tier.split == 2).all() and (tier.mask == 1).all(), name
        np.testing.assert_array_equal(tier.label, test.label)
        np.testing.assert_array_equal(tier.info["mnist_index"], test.info["mnist_index"])
        assert tier.image.dtype == np.uint8 and tier.audio.shape == (len(test), 16000), name
    np.testing.assert_array_equal(found["benchmark"].audio, test.audio)
    clean = found["clean"]
    for i, k in enumerate(clean.info["mnist_index"]):
        np.testing.assert_array_equal(clean.image[i], normalize_digit(mnist[k]))
    english = [t for t, lang in zip(clean.texts, clean.info["language"], strict=True) if lang == 0]
    assert set(english) <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    assert np.sqrt((clean.audio**2).mean()) < np.sqrt((test.audio**2).mean())  # no noise
    unseen = found["unseen_speakers"]
    np.testing.assert_array_equal(unseen.image, clean.image)
    assert not np.array_equal(unseen.audio, clean.audio)
    assert (np.sqrt((unseen.audio**2).mean(axis=1)) > 0.005).all()
    people_tier = found["people_images"]
    np.testing.assert_array_equal(people_tier.audio, clean.audio)
    assert (people_tier.image != clean.image).any(axis=(1, 2)).mean() > 0.5


def test_load_tiers_builds_once_with_the_data_set(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tiers.load_tiers(seed=5, limit=20, cache_dir=cache_dir, progress=False)
    assert [len(t) for t in first.values()] == [4, 4, 4, 4]
    assert (cache_dir / digits.cache_key(5, 20) / "meta.json").exists()  # the data set came along

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(digits, "build", no_build)
    again = tiers.load_tiers(seed=5, limit=20, cache_dir=cache_dir, progress=False)
    assert {k: v.fingerprint for k, v in again.items()} == {k: v.fingerprint for k, v in first.items()}
    assert load_dataset(seed=5, limit=20, cache_dir=cache_dir, progress=False).counts()["test"] == 4
