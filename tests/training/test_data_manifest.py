"""Your own data set: JSONL and CSV manifests, missing modalities, splits, and rows that are wrong."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.media import decode_audio, decode_image, encode_text
from tests.media_fixtures import audio_bytes, digit_pattern, image_bytes, tone
from training.data import DatasetError, load_dataset
from training.data.manifest import load_manifest

LABELS = ["cat", "dog", "owl"]


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    """Three images and three clips (different formats and rates) next to where manifests go."""
    (tmp_path / "img").mkdir()
    (tmp_path / "snd").mkdir()
    for i in range(3):
        pattern = np.roll(digit_pattern(), 4 * i, axis=1)
        (tmp_path / f"img/{i}.png").write_bytes(image_bytes(Image.fromarray(pattern)))
        rate = (8000, 22050, 44100)[i]
        fmt, sub = (("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"))[i]
        (tmp_path / f"snd/{i}.{fmt.lower()}").write_bytes(
            audio_bytes(tone(0.4, rate, 300 + 100 * i), rate, fmt, sub)
        )
    (tmp_path / "img/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return tmp_path


def _rows(n: int = 30) -> list[dict[str, str]]:
    """Rows cycling through the files; every fifth lacks its image, every seventh its audio."""
    rows = []
    for i in range(n):
        k = i % 3
        row = {
            "image": f"img/{k}.png",
            "audio": f"snd/{k}.{('wav', 'flac', 'ogg')[k]}",
            "text": f"{LABELS[k]} {i}",
        }
        if i % 5 == 0:
            del row["image"]
        if i % 7 == 0:
            del row["audio"]
        rows.append({**row, "label": LABELS[k]})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = ["image", "audio", "text", "label", "split"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in fields if any(k in r for r in rows)])
        writer.writeheader()
        writer.writerows(rows)
    return path


DIGITS_AUDIO = {"sample_rate": 16000, "audio_seconds": 1.0}
"""The digits' audio spec, chosen: derived from these files it would be 8 kHz, 0.5 s."""


def test_jsonl_with_missing_modalities(files: Path) -> None:
    rows = _rows()
    manifest = _write_jsonl(files / "data.jsonl", rows)  # type: ignore[arg-type]
    ds = load_manifest(manifest, progress=False, spec=DIGITS_AUDIO)
    assert len(ds) == 30 and ds.labels == LABELS
    for i, row in enumerate(rows):
        assert ds.mask[i].tolist() == [float(m in row) for m in ("image", "audio", "text")]
        assert ds.labels[ds.label[i]] == row["label"] and ds.texts[i] == row["text"]
        np.testing.assert_array_equal(ds.text[i], encode_text(row["text"]))
        if "image" in row:
            # the server's decoder, normalisation included (docs/api.md "How images are read")
            np.testing.assert_array_equal(ds.image[i], decode_image((files / row["image"]).read_bytes()))
        else:
            assert not ds.image[i].any()
        if "audio" in row:
            np.testing.assert_array_equal(ds.audio[i], decode_audio((files / row["audio"]).read_bytes()))
        else:
            assert not ds.audio[i].any()
    derived = load_manifest(
        manifest, progress=False
    ).spec  # from the headers: 28x28 grey, 8 kHz clips of 0.4 s
    assert derived.summary() == "28x28 grey, 0.5 s at 8000 Hz, 64 bytes" and derived.image_normalize


def test_csv_gives_the_same_data_set_as_jsonl(files: Path) -> None:
    rows = _rows()
    from_jsonl = load_manifest(_write_jsonl(files / "m.jsonl", rows), progress=False)  # type: ignore[arg-type]
    from_csv = load_manifest(_write_csv(files / "m.csv", rows), progress=False)
    assert from_csv.fingerprint == from_jsonl.fingerprint


def test_automatic_split_is_stratified_and_seeded(files: Path) -> None:
    manifest = _write_jsonl(files / "m.jsonl", _rows(300))  # type: ignore[arg-type]
    ds = load_manifest(manifest, seed=0, progress=False)
    for c in range(3):
        assert np.bincount(ds.split[ds.label == c], minlength=3).tolist() == [70, 10, 20]
    again, other = (
        load_manifest(manifest, seed=0, progress=False),
        load_manifest(manifest, seed=1, progress=False),
    )
    np.testing.assert_array_equal(again.split, ds.split)
    assert (other.split != ds.split).any()


def test_split_column_and_limit(files: Path) -> None:
    rows = [
        {**r, "split": ("train", "val", "test")[i % 3 // 2 * 2 if i % 4 else 1]}
        for i, r in enumerate(_rows(60))
    ]
    ds = load_dataset(str(_write_jsonl(files / "manifest.jsonl", rows)), progress=False)  # type: ignore[arg-type]
    assert ds.split.tolist() == [("train", "val", "test").index(r["split"]) for r in rows]
    small = load_dataset(str(files / "manifest.jsonl"), limit=20, progress=False)
    assert len(small) == 20 and set(np.unique(small.split)) == {0, 1, 2}
    assert abs(np.bincount(small.label, minlength=3) - 20 / 3).max() <= 1
    assert load_dataset(str(files), progress=False).fingerprint == ds.fingerprint  # a folder finds manifest.*


def test_numeric_labels_sort_as_numbers(files: Path) -> None:
    rows = [{"text": "x", "label": lab} for lab in ("10", "2", "1", "2")]
    ds = load_manifest(_write_jsonl(files / "m.jsonl", rows), progress=False)  # type: ignore[arg-type]
    assert ds.labels == ["1", "2", "10"] and ds.label.tolist() == [2, 1, 0, 1]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "a", "label": "x"}', "{not json"], r"line 2: not valid JSON"),
        (['{"text": "a"}'], r"line 1: the label is missing"),
        (['{"label": "x", "text": ""}'], r"line 1: no modality"),
        (['{"imgae": "img/0.png", "label": "x"}'], r"line 1: unknown field\(s\) \['imgae'\]"),
        (['["a", "b"]'], r"line 1: a row must be a JSON object"),
        (['{"text": ["a"], "label": "x"}'], r"line 1: text must be a string"),
        (['{"text": "a", "label": "x", "split": "holdout"}'], r"line 1: split must be train, val or test"),
        (['{"text": "a", "label": "x"}', '{"image": "img/nope.png", "label": "x"}'],
         r"line 2: image file 'img/nope.png' cannot be read"),
        (['{"image": "img/broken.png", "label": "x"}'], r"line 1: image 'img/broken.png': is not an image"),
        (['{"audio": "img/0.png", "label": "x"}'], r"line 1: audio 'img/0.png': could not be decoded as WAV"),
        (['{"text": "a\\u0000b", "label": "x"}'], r"line 1: text: must not contain NUL"),
        ([], r"no rows"),
    ],
    ids=["json", "label", "no-modality", "unknown-field", "not-object", "text-type", "split", "missing-file",
         "bad-image", "bad-audio", "bad-text", "empty"],
)  # fmt: skip
def test_bad_rows_name_the_line_and_the_file(files: Path, lines: list[str], message: str) -> None:
    manifest = files / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_manifest(manifest, progress=False)


def test_bad_csv_row_names_its_line(files: Path) -> None:
    manifest = files / "m.csv"
    manifest.write_text("image,label\nimg/0.png,x\nimg/broken.png,y\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"m.csv line 3: image 'img/broken.png'"):
        load_manifest(manifest, progress=False)


def test_unknown_source_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither 'default' nor an existing"):
        load_dataset(str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="manifest.jsonl nor manifest.csv"):
        load_dataset(str(tmp_path))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DatasetError, match=".jsonl or .csv"):
        load_dataset(str(tmp_path / "data.txt"))


def test_the_spec_is_part_of_a_manifests_fingerprint(files: Path) -> None:
    manifest = _write_jsonl(files / "m.jsonl", _rows(9))  # type: ignore[arg-type]
    at_16k = load_manifest(manifest, progress=False, spec={"sample_rate": 16000, "audio_seconds": 1.0})
    at_8k = load_manifest(manifest, progress=False, spec={"sample_rate": 8000, "audio_seconds": 2.0})
    assert at_16k.audio.shape == at_8k.audio.shape  # same shapes, different meaning
    assert at_16k.fingerprint != at_8k.fingerprint
