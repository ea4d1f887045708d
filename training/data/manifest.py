"""Your own data set: a JSONL or CSV manifest of files and strings, decoded with :mod:`app.media`.

One row per sample::

    {"image": "img/0001.png", "audio": "wav/0001.wav", "text": "seven", "label": "7", "split": "train"}

``image`` and ``audio`` are paths relative to the manifest (absolute paths work too); any
modality may be left out, empty or null (its mask is 0 and its tensor all zeros), but each row
needs at least one. ``label`` is any string. ``split`` (train/val/test) is optional: without it
rows are split 70/10/20, stratified by label, from the seed. The server's decoder reads the
files, so a file the trainer accepts is one the server accepts, and vice versa. The files are
decoded at the data set's input spec, derived from their headers unless chosen
(:mod:`training.data.spec`), and the trained models keep that spec.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image
from tqdm import tqdm

from app.contract import MAX_AUDIO_SECONDS, MAX_IMAGE_PIXELS
from app.manifest import DecodeParams
from app.media import MODALITIES, MediaError, decode_audio, decode_image, encode_text
from training.data.dataset import SPLITS, MultimodalDataset, array_shapes, fingerprint, stratified_order
from training.data.spec import SpecOverrides, derive_spec, make_spec

FIELDS = ("image", "audio", "text", "label", "split", "id")
"""Allowed manifest fields; ``id`` is kept for the user's own bookkeeping and ignored."""
SPLIT_ALIASES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1, "test": 2}
AUTO_SPLIT = (0.7, 0.1, 0.2)


class DatasetError(ValueError):
    """A manifest row (or the manifest itself) is unusable; the message names the row and file."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``.jsonl`` or ``.csv`` manifest as dicts, blank values dropped."""
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise DatasetError(f"{path}: a manifest must be a .jsonl or .csv file")
    text = path.read_text(encoding="utf-8-sig")
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        rows = [(reader.line_num, dict(row)) for row in reader]
    else:
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path.name} line {line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path.name} line {line_no}: a row must be a JSON object")
            rows.append((line_no, row))
    if not rows:
        raise DatasetError(f"{path}: the manifest has no rows")
    out = []
    for line_no, row in rows:
        where = f"{path.name} line {line_no}"
        unknown = sorted(set(row) - set(FIELDS), key=str)
        if unknown:
            raise DatasetError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(FIELDS)}")
        clean: dict[str, Any] = {"where": where}
        for key, value in row.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float | type(None)):
                raise DatasetError(f"{where}: {key} must be a string, got {type(value).__name__}")
            if value is not None and str(value).strip():
                clean[key] = value if key == "text" else str(value).strip()
        if "label" not in clean:
            raise DatasetError(f"{where}: the label is missing")
        if not any(m in clean for m in MODALITIES):
            raise DatasetError(f"{where}: no modality; give at least one of {', '.join(MODALITIES)}")
        out.append(clean)
    return out


def _decode(row: dict[str, Any], modality: str, root: Path, spec: DecodeParams | None = None) -> np.ndarray:
    """One row's tensor for ``modality`` at ``spec`` (default: the digits'), or :class:`DatasetError`
    naming the row and file."""
    spec = spec or DecodeParams()
    value = row[modality]
    try:
        if modality == "text":
            return encode_text(str(value), max_bytes=spec.text_bytes)
        file = root / value
        data = file.read_bytes()
        if modality == "image":  # the server's limits (app.contract), so both accept the same files
            return decode_image(
                data,
                size=spec.image_size,
                channels=spec.image_channels,
                normalize=spec.image_normalize,
                max_pixels=MAX_IMAGE_PIXELS,
            )
        return decode_audio(
            data, sample_rate=spec.sample_rate, samples=spec.audio_samples, max_seconds=MAX_AUDIO_SECONDS
        )
    except OSError as exc:
        raise DatasetError(
            f"{row['where']}: {modality} file {value!r} cannot be read ({exc.strerror})"
        ) from exc
    except MediaError as exc:
        name = f" {value!r}" if modality != "text" else ""
        raise DatasetError(f"{row['where']}: {modality}{name}: {exc.reason}") from exc


def _label_order(names: set[str]) -> list[str]:
    """Integer-looking labels in numeric order ("2" before "10"), anything else alphabetically."""
    if all(re.fullmatch(r"-?[0-9]+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _auto_split(label: np.ndarray, seed: int) -> np.ndarray:
    """70/10/20 per label, deterministic from the seed."""
    split = np.zeros(len(label), dtype=np.int8)
    rng = np.random.default_rng([seed, 10])
    for c in np.unique(label):
        members = rng.permutation(np.flatnonzero(label == c))
        n_val, n_test = round(len(members) * AUTO_SPLIT[1]), round(len(members) * AUTO_SPLIT[2])
        split[members[len(members) - n_val - n_test : len(members) - n_test]] = 1
        split[members[len(members) - n_test :]] = 2
    return split


def load_manifest(
    path: Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    spec: SpecOverrides | None = None,
) -> MultimodalDataset:
    """Decode every row of a manifest into a :class:`MultimodalDataset`.

    ``spec`` holds the input-spec choices (``image_size``, ``image_channels``, ``audio_seconds``,
    ``sample_rate``, ``text_bytes``; ``None`` values are derived from the files' headers).

    Raises:
        DatasetError: a malformed manifest or row, a missing or undecodable file, a bad split,
            or a spec that cannot be served.
    """
    rows = read_rows(path)
    try:
        chosen = make_spec(spec, derive_spec(rows, path.parent))
    except ValueError as exc:
        raise DatasetError(f"input spec: {exc}") from exc
    labels = _label_order({r["label"] for r in rows})
    label = np.array([labels.index(r["label"]) for r in rows], dtype=np.int64)
    if any("split" in r for r in rows):
        bad = [r["where"] for r in rows if r.get("split", "").lower() not in SPLIT_ALIASES]
        if bad:
            raise DatasetError(f"{bad[0]}: split must be train, val or test (on every row, if on any)")
        split = np.array([SPLIT_ALIASES[r["split"].lower()] for r in rows], dtype=np.int8)
    else:
        split = _auto_split(label, seed)
    index = np.arange(len(rows))
    if limit is not None and limit < len(rows):
        order = stratified_order(
            split.astype(np.int64) * len(labels) + label, np.random.default_rng([seed, 11])
        )
        index = np.sort(order[:limit])
    n = len(index)
    arrays = {
        name: np.zeros((n, *shape), dtype=dtype) for name, (dtype, shape) in array_shapes(chosen).items()
    }
    texts = [""] * n
    for i, k in enumerate(tqdm(index, desc=f"decoding {path.name}", unit="row", disable=not progress)):
        row = rows[k]
        for m, modality in enumerate(MODALITIES):
            if modality in row:
                arrays[modality][i] = _decode(row, modality, path.parent, chosen)
                arrays["mask"][i, m] = 1.0
        if "text" in row:
            texts[i] = unicodedata.normalize("NFC", str(row["text"])).strip()
    arrays["label"], arrays["split"] = label[index], split[index]
    return MultimodalDataset(
        image=arrays["image"],
        audio=arrays["audio"],
        text=arrays["text"],
        mask=arrays["mask"],
        label=arrays["label"],
        labels=labels,
        split=arrays["split"],
        texts=texts,
        fingerprint=fingerprint(arrays, labels, texts, chosen),
        spec=chosen,
    )


def export(ds: MultimodalDataset, folder: Path, *, progress: bool = True) -> Path:
    """Write ``ds`` as PNG + 16-bit WAV files and a ``manifest.jsonl``; returns the manifest path.

    Loading the result with :func:`load_manifest` gives the same images exactly, the same
    audio up to 16-bit quantisation, and the same text, labels and splits (at the spec derived
    from the files, which is ``ds.spec`` for the spec ranges :mod:`training.data.spec` derives).
    """
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "audio").mkdir(exist_ok=True)
    manifest = folder / "manifest.jsonl"
    width = len(str(max(len(ds) - 1, 0)))
    with manifest.open("w", encoding="utf-8") as f:
        for i in tqdm(range(len(ds)), desc=f"exporting to {folder}", unit="row", disable=not progress):
            row: dict[str, str] = {}
            if ds.mask[i, 0]:
                row["image"] = f"images/{i:0{width}d}.png"
                pixels = np.asarray(ds.image[i])
                Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L").save(folder / row["image"])
            if ds.mask[i, 1]:
                row["audio"] = f"audio/{i:0{width}d}.wav"
                sf.write(
                    folder / row["audio"], np.asarray(ds.audio[i]), ds.spec.sample_rate, subtype="PCM_16"
                )
            if ds.mask[i, 2]:
                row["text"] = ds.texts[i]
            row |= {"label": ds.labels[int(ds.label[i])], "split": SPLITS[int(ds.split[i])]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return manifest
