"""Data sets for training and evaluation: the built-in digits or your own manifest.

``load_dataset("default")`` builds (once, then from the cache) the "spoken, written and drawn
digits" of DESIGN §6; ``load_dataset("path/to/manifest.jsonl")`` decodes your files with the
server's own decoder (:mod:`app.media`). Either way the arrays are the serving contract's input
tensors, so what a model trains on is exactly what it is served.
"""

from __future__ import annotations

from pathlib import Path

from training.data.dataset import SPLITS, MultimodalDataset
from training.data.digits import default_cache_dir, load_digits
from training.data.manifest import DatasetError, export, load_manifest
from training.data.sources import MissingToolError
from training.data.spec import SpecOverrides, make_spec
from training.data.tiers import TIERS, load_tiers

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
BUILT_IN = ("default", "shapes")
"""Built-in data sets: ``default`` (the digits) and ``shapes`` (:mod:`training.data.shapes`)."""


def load_dataset(
    source: str = "default",
    *,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    spec: SpecOverrides | None = None,
) -> MultimodalDataset:
    """Load a data set by name or manifest path, at an input spec.

    Args:
        source: ``"default"`` for the built-in digits, ``"shapes"`` for the coloured shapes
            (:mod:`training.data.shapes`), or the path of a ``.jsonl`` / ``.csv`` manifest (or of
            a folder holding ``manifest.jsonl`` or ``manifest.csv``).
        seed: decides the built-in data and any split or subset drawn at random.
        limit: a stratified subset of this many samples (the built-in set then generates only
            those, for fast tests; it is cached under its own key).
        cache_dir: where the built-in set is cached (default ``<repo>/.cache/data``).
        progress: show progress bars.
        spec: input-spec choices for a manifest (see :mod:`training.data.spec`; unset parts are
            derived from the files). The built-in digits exist at their own spec only.

    Raises:
        DatasetError: the manifest or one of its files is unusable (the message names the row).
        MissingToolError: the built-in set needs espeak-ng or npm and one is missing.
        FileNotFoundError: ``source`` is neither ``"default"`` nor an existing manifest.
        ValueError: ``limit`` is out of range.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    if source == "default":
        if spec and make_spec(spec) != make_spec():
            raise ValueError(
                f"the built-in digits are made at {make_spec().summary()}; the input spec options "
                "apply to your own manifest"
            )
        return load_digits(seed, limit, cache_dir, progress=progress)
    if source in BUILT_IN:
        if spec and any(v is not None for v in spec.values()):
            raise ValueError(
                f"the built-in data set {source!r} has its own input spec; spec options are for manifests"
            )
        from training.data.shapes import load_shapes

        return load_shapes(seed, limit, cache_dir, progress=progress)
    path = Path(source)
    if path.is_dir():
        found = [path / name for name in MANIFEST_NAMES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path} holds neither {' nor '.join(MANIFEST_NAMES)}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"data source {source!r} is neither 'default' nor an existing .jsonl/.csv manifest"
        )
    return load_manifest(path, seed=seed, limit=limit, progress=progress, spec=spec)


__all__ = [
    "SPLITS",
    "TIERS",
    "DatasetError",
    "MissingToolError",
    "MultimodalDataset",
    "default_cache_dir",
    "export",
    "load_dataset",
    "load_tiers",
]
