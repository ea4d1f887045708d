"""Online heavy noise: raising a stored sample's noise gives the level it names, rows it does not
pick stay as they are, and training records what it did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.manifest import DecodeParams
from app.media import encode_text
from tests.media_fixtures import tone
from training.data.dataset import MultimodalDataset
from training.data.noise import audio_noise, corrupt_text, snr_db
from training.frontends import LogMel
from training.graph import featurize
from training.online_noise import OnlineNoise, bins_read, raise_audio, raise_image, raise_text
from training.pipeline import calibration_rows
from training.train import TrainConfig, train_model

RANGES = {"image": (0.6, 1.0), "audio": (0.7, 0.85), "text": (0.5, 0.9)}


def _clips(n: int = 16) -> np.ndarray:
    rows = [tone(1.0, 16000, freq=200 + 20 * i, amplitude=0.005) for i in range(n)]  # no gain cut
    return np.stack(rows).astype(np.float32)


def _snr(clean: np.ndarray, noisy: torch.Tensor) -> float:
    noise = noisy.numpy().astype(float) - clean
    return float(10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean(noise**2)))


def _dataset(n: int, split: int, info: dict[str, np.ndarray]) -> MultimodalDataset:
    return MultimodalDataset(
        image=np.zeros((n, 28, 28), np.uint8),
        audio=_clips(n),
        text=np.stack([encode_text("one")] * n),
        mask=np.ones((n, 3), np.float32),
        label=np.arange(n) % 2,
        split=np.full(n, split, np.int8),
        labels=["a", "b"],
        texts=["one"] * n,
        fingerprint="x",
        info=info,
    )


@pytest.mark.parametrize(("stored", "target"), [(0.0, 0.7), (0.3, 0.8), (0.7, 0.85)])
def test_raise_audio_reaches_the_target_snr_from_a_stored_noisy_clip(stored: float, target: float) -> None:
    clean = _clips()
    noisy = audio_noise(clean, stored, np.random.default_rng(0)) if stored else clean
    n = len(clean)
    out = raise_audio(
        torch.from_numpy(noisy),
        torch.full((n,), stored),
        torch.full((n,), target),
        torch.Generator().manual_seed(1),
    )
    assert out.dtype == torch.float32 and out.shape == clean.shape
    assert _snr(clean, out) == pytest.approx(float(snr_db(target)), abs=0.25)


def test_raise_audio_keeps_a_clip_already_noisier_than_the_target() -> None:
    clean = _clips(4)
    noisy = torch.from_numpy(audio_noise(clean, 0.8, np.random.default_rng(0)))
    out = raise_audio(noisy, torch.full((4,), 0.8), torch.tensor([0.8, 0.75, 0.3, 0.0]), torch.Generator())
    torch.testing.assert_close(out, noisy, rtol=0, atol=0)


def test_raise_image_adds_the_missing_variance_and_keeps_rows_not_raised() -> None:
    grey = torch.zeros(2000, 1, 28, 28)  # pixel 127.5: no clipping at these levels
    stored, target = torch.full((2000,), 0.03), torch.full((2000,), 0.05)
    out = raise_image(grey, stored, target, torch.Generator().manual_seed(0))
    pixels = (out + 1.0) * 127.5
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)  # on the uint8 grid
    assert out.min() >= -1.0 and out.max() <= 1.0
    diff = pixels - 127.5
    square = diff.abs() > 100  # the one-pixel occluding square (side round(0.05 * 0.6 * 28) = 1)
    assert int(square.sum()) <= 2000  # at most one pixel a picture
    assert float(diff[~square].std()) == pytest.approx(255 * (0.05**2 - 0.03**2) ** 0.5, rel=0.05)
    kept = raise_image(
        grey[:3], torch.tensor([0.9, 0.5, 0.0]), torch.tensor([0.9, 0.4, 0.0]), torch.Generator()
    )
    torch.testing.assert_close(kept, grey[:3], rtol=0, atol=0)


def test_raise_text_is_a_second_round_of_edits_at_the_composed_rate() -> None:
    word = "dziewięć"
    assert raise_text(word, 0.6, 0.5, np.random.default_rng(0)) == word  # already noisier
    assert raise_text(word, 1.0, 1.0, np.random.default_rng(0)) == word
    # from clean, the second round is the corruption at the target itself
    assert raise_text(word, 0.0, 0.7, np.random.default_rng(3)) == corrupt_text(
        word, 0.7, np.random.default_rng(3)
    )
    # from 0.5 to 0.75: q = 1 - 0.25 / 0.5 = 0.5
    assert raise_text(word, 0.5, 0.75, np.random.default_rng(4)) == corrupt_text(
        word, 0.5, np.random.default_rng(4)
    )


def _noise(
    n: int, share: float, levels: np.ndarray | None = None
) -> tuple[OnlineNoise, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    audio = _clips(n)
    texts = ["seven", "sieben", "семь", "七"] * (n // 4)
    image = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    text = np.stack([encode_text(t) for t in texts])
    lv = np.zeros((n, 3), np.float32) if levels is None else levels
    noise = OnlineNoise(torch.from_numpy(audio), texts, torch.from_numpy(lv), RANGES, share, DecodeParams())
    return noise, featurize(image, audio, text)


def test_online_noise_changes_only_the_rows_it_picks_and_is_reproducible() -> None:
    noise, feats = _noise(64, 0.5)
    idx = torch.arange(64)
    a = noise(feats, idx, torch.Generator().manual_seed(5))
    b = noise(feats, idx, torch.Generator().manual_seed(5))
    for key in feats:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        assert a[key].dtype == feats[key].dtype and a[key].shape == feats[key].shape
    changed = [(a[k] != feats[k]).flatten(1).any(dim=1) for k in ("image", "audio")]
    assert torch.equal(changed[0], changed[1])  # a picked row gets every modality raised
    assert 16 < int(changed[0].sum()) < 48  # about half of 64
    assert ((a["text"] != feats["text"]).any(dim=1) <= changed[0]).all()  # unpicked text untouched
    heavy = LogMel()(raise_audio(noise.audio[:1], torch.zeros(1), torch.full((1,), 0.85), torch.Generator()))
    assert heavy.shape == feats["audio"][:1].shape
    none, _ = _noise(8, 0.0)
    same = none(feats, torch.arange(8), torch.Generator())
    assert all(same[k] is feats[k] for k in feats)


def test_rows_stored_at_full_noise_are_not_touched() -> None:
    noise, feats = _noise(16, 1.0, levels=np.ones((16, 3), np.float32))
    out = noise(feats, torch.arange(16), torch.Generator().manual_seed(0))
    for key in feats:
        torch.testing.assert_close(out[key], feats[key], rtol=0, atol=0)


def test_only_data_that_records_its_noise_levels_gets_online_noise() -> None:
    n = 8
    assert OnlineNoise.for_split(_dataset(n, 0, {}), RANGES, 0.5) is None
    levels = {f"{m}_level": np.zeros(n, np.float32) for m in ("image", "audio", "text")}
    made = OnlineNoise.for_split(_dataset(n, 0, levels), RANGES, 0.5)
    assert made is not None and made.share == 0.5 and made.levels.shape == (n, 3)
    assert OnlineNoise.for_split(_dataset(n, 0, levels), RANGES, 0.0) is None


def test_training_records_the_share_it_used() -> None:
    noise, feats = _noise(32, 0.5)
    train = (feats, torch.ones(32, 3), torch.arange(32) % 10)
    with pytest.raises(ValueError, match="online_noise"):
        train_model(TrainConfig(model="audio_only", epochs=1), 10, train, train, progress=False, noise=noise)
    cfg = TrainConfig(model="audio_only", epochs=1, batch_size=16, online_noise=0.5)
    _, info = train_model(cfg, 10, train, train, progress=False, noise=noise)
    assert len(info["history"]) == 1


def test_the_cheaper_log_mel_gives_the_same_features() -> None:
    clips = (
        torch.from_numpy(_clips(4) * 50)
        + torch.randn(4, 16000, generator=torch.Generator().manual_seed(0)) * 0.01
    )
    full, cheap = LogMel(), bins_read(LogMel())
    assert cheap.bases.shape[0] < full.bases.shape[0] // 2 + 2  # about half the DFT rows
    torch.testing.assert_close(cheap(clips), full(clips), atol=1e-4, rtol=1e-4)


def test_calibration_rows_are_val_and_its_heavy_copy() -> None:
    n = 8
    levels = {f"{m}_level": np.zeros(n, np.float32) for m in ("image", "audio", "text")}
    val = _dataset(n, 1, levels)
    val_t = (featurize(val.image, val.audio, val.text), torch.ones(n, 3), torch.from_numpy(val.label))
    rows = calibration_rows(val, val_t, seed=0)
    assert rows is not None
    feats, mask, labels = rows
    assert len(labels) == 2 * n and torch.equal(labels[:n], labels[n:]) and mask.shape == (2 * n, 3)
    for key in val_t[0]:
        torch.testing.assert_close(feats[key][:n], val_t[0][key], rtol=0, atol=0)  # the stored rows first
    assert (feats["audio"][n:] != val_t[0]["audio"]).flatten(1).any(dim=1).all()  # every copy raised
    assert calibration_rows(_dataset(n, 1, {}), val_t, seed=0) is None


def test_a_unimodal_model_gets_only_its_modality_raised() -> None:
    noise, feats = _noise(32, 1.0)
    out = noise(feats, torch.arange(32), torch.Generator().manual_seed(2), only="text")
    for key in ("image", "audio"):
        assert out[key] is feats[key]
    assert (out["text"] != feats["text"]).any()
