"""The in-memory data set every trainer and evaluator reads, and its on-disk cache format.

Arrays are exactly the serving contract's input tensors (DESIGN §2), so a model trains on
what it will be served. On disk each array is a plain ``.npy`` (memory-mappable) next to a
``meta.json``; the fingerprint is a sha256 over the arrays, so two builds can be compared
without comparing 600 MB of audio by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.manifest import DecodeParams
from app.media import DEFAULT_MAX_BYTES, DEFAULT_SAMPLES, DEFAULT_SIZE, MODALITIES

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names; ``split[i]`` is an index into this tuple."""
ARRAYS: dict[str, tuple[type[np.generic], tuple[int, ...]]] = {
    "image": (np.uint8, (DEFAULT_SIZE, DEFAULT_SIZE)),
    "audio": (np.float32, (DEFAULT_SAMPLES,)),
    "text": (np.uint8, (DEFAULT_MAX_BYTES,)),
    "mask": (np.float32, (len(MODALITIES),)),
    "label": (np.int64, ()),
    "split": (np.int8, ()),
}
"""Each per-sample array: its dtype and the shape of one sample, at the digits' spec."""


def array_shapes(spec: DecodeParams) -> dict[str, tuple[type[np.generic], tuple[int, ...]]]:
    """:data:`ARRAYS` at input ``spec``: the modality tensors take the spec's shapes."""
    shapes = {m: tuple(spec.input_spec(m).shape[1:]) for m in MODALITIES}
    return {name: (dtype, shapes.get(name, shape)) for name, (dtype, shape) in ARRAYS.items()}


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class MultimodalDataset:
    """Samples of up to three modalities with one label each.

    Attributes:
        image: uint8 ``[N, 28, 28]`` (the digits' spec; ``[N, S, S]`` or ``[N, S, S, 3]`` at ``spec``).
        audio: float32 ``[N, 16000]`` (1 s at 16 kHz, in [-1, 1]; ``[N, spec.audio_samples]``).
        text: uint8 ``[N, 64]`` (UTF-8 bytes, zero padded; ``[N, spec.text_bytes]``).
        mask: float32 ``[N, 3]``: 1 = modality present (order ``app.media.MODALITIES``); a
            missing modality's tensor is all zeros.
        label: int64 ``[N]``, an index into ``labels``.
        labels: class names (built-in: ``"0"`` .. ``"9"``).
        split: int8 ``[N]``: 0 train, 1 val, 2 test.
        texts: the (noisy) strings behind ``text`` (``""`` where text is missing), so
            evaluation can corrupt text at the string level.
        fingerprint: sha256 over the arrays; equal fingerprints mean identical data.
        info: optional per-sample provenance arrays (``[N]`` each), e.g. ``voice`` for the
            built-in set, so held-out properties can be checked.
        spec: the input spec the arrays were decoded at; models trained on them take it.
    """

    image: np.ndarray
    audio: np.ndarray
    text: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    labels: list[str]
    split: np.ndarray
    texts: list[str]
    fingerprint: str
    info: Mapping[str, np.ndarray] = field(default_factory=dict)
    spec: DecodeParams = field(default_factory=DecodeParams)

    def __post_init__(self) -> None:
        n = len(self.label)
        for name, (dtype, shape) in array_shapes(self.spec).items():
            arr = getattr(self, name)
            if arr.dtype != dtype or arr.shape != (n, *shape):
                raise ValueError(
                    f"{name} must be {np.dtype(dtype).name} {[n, *shape]}, got {arr.dtype} {list(arr.shape)}"
                )
        if len(self.texts) != n or any(len(v) != n for v in self.info.values()):
            raise ValueError(f"texts and info arrays must have one entry per sample ({n})")
        if n and (self.label.min() < 0 or self.label.max() >= len(self.labels)):
            raise ValueError(f"labels must index into the {len(self.labels)} class names")

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, idx: np.ndarray) -> MultimodalDataset:
        """The samples at ``idx`` (integer indices or a boolean mask), in that order.

        The subset's fingerprint is derived from the parent's and the indices, which is as
        unique as hashing the arrays again and costs nothing.
        """
        idx = np.asarray(idx)
        idx = np.flatnonzero(idx) if idx.dtype == np.bool_ else idx.astype(np.int64)
        digest = hashlib.sha256(self.fingerprint.encode() + idx.tobytes()).hexdigest()
        return MultimodalDataset(
            **{name: np.asarray(getattr(self, name)[idx]) for name in ARRAYS},
            labels=list(self.labels),
            texts=[self.texts[i] for i in idx],
            fingerprint=digest,
            info={k: np.asarray(v[idx]) for k, v in self.info.items()},
            spec=self.spec,
        )

    def split_view(self, name: Literal["train", "val", "test"]) -> MultimodalDataset:
        """The samples of one split."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.subset(self.split == SPLITS.index(name))

    def counts(self) -> dict[str, int]:
        """Samples per split, for logs and meta.json."""
        return {s: int((self.split == i).sum()) for i, s in enumerate(SPLITS)}


def stratified_order(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix holds each stratum in proportion to its size.

    Sample ``k`` of a stratum of size ``n`` sits at position ``(k + offset) / n`` (rank within the
    stratum random, offset random per stratum), and samples are sorted by position.
    """
    key = np.empty(len(strata))
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        key[members] = (rng.permutation(len(members)) + rng.random()) / len(members)
    return np.argsort(key, kind="stable")


def fingerprint(
    arrays: Mapping[str, np.ndarray], labels: list[str], texts: list[str], spec: DecodeParams | None = None
) -> str:
    """sha256 over every per-sample array (name, dtype, shape, bytes), the labels and the texts.

    A ``spec`` other than the digits' is hashed too: two decodings of the same files at rates
    that give equal shapes (1 s at 16 kHz vs 2 s at 8 kHz) differ. The digits' spec adds nothing,
    so fingerprints made before specs existed stay valid.
    """
    digest = hashlib.sha256()
    for name in ARRAYS:
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        view = arr.reshape(-1).view(np.uint8)
        for start in range(0, len(view), 1 << 26):  # bounded chunks: no 600 MB temporary copies
            digest.update(view[start : start + (1 << 26)].data)
    digest.update(json.dumps([labels, texts], ensure_ascii=False).encode())
    if spec is not None and spec != DecodeParams():
        digest.update(spec.model_dump_json().encode())
    return digest.hexdigest()


def save(ds: MultimodalDataset, folder: Path, meta: dict[str, Any]) -> None:
    """Write ``ds`` into ``folder`` atomically: a half-written cache is never picked up.

    The files go to a sibling temporary folder that is renamed into place at the end; if
    another process got there first, its (identical, same key) copy is kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in ARRAYS:
        np.save(tmp / f"{name}.npy", getattr(ds, name))
    for name, arr in ds.info.items():
        np.save(tmp / f"info_{name}.npy", arr)
    full = {**meta, "n": len(ds), "counts": ds.counts(), "fingerprint": ds.fingerprint}
    full |= {"labels": ds.labels, "info": sorted(ds.info), "spec": ds.spec.model_dump(), "texts": ds.texts}
    (tmp / "meta.json").write_text(json.dumps(full, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").exists():
            raise


def load(folder: Path) -> MultimodalDataset:
    """Open a cached data set; the arrays are memory-mapped, read-only."""
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    info = {name: np.load(folder / f"info_{name}.npy", mmap_mode="r") for name in meta["info"]}
    spec = DecodeParams.model_validate(meta.get("spec", {}))  # caches made before specs: the digits'
    return MultimodalDataset(
        **arrays,
        labels=meta["labels"],
        texts=meta["texts"],
        fingerprint=meta["fingerprint"],
        info=info,
        spec=spec,
    )


def read_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a cached data set (recipe, build time, counts), without the texts."""
    meta: dict[str, Any] = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    meta.pop("texts", None)
    return meta
