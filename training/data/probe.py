"""How hard is a data set? Train the real unimodal baselines on it and report test accuracy.

This is how the built-in noise levels were tuned (each modality alone should land between 40%
and 80%, so fusion has something to win). It deliberately reuses the trainer's own models and
loop (``training.train``) instead of a look-alike, so the numbers are the baselines' numbers.
Nothing else in :mod:`training.data` imports this module: the data layer stays free of torch.
"""

from __future__ import annotations

import numpy as np
import torch

from training.data.dataset import MultimodalDataset

BASELINES = {"image": "image_only", "audio": "audio_only", "text": "text_only"}


def probe_modalities(
    ds: MultimodalDataset,
    *,
    models: dict[str, str] | None = None,
    epochs: int = 12,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Test accuracy of each model trained on ``ds``'s train split (best epoch on val).

    Args:
        ds: the data set, with train, val and test samples.
        models: ``{report name: trainer model name}``; default: the three unimodal baselines.
        epochs: training epochs (the trainer's default is what ``make train`` uses).
        seed: training seed.
        progress: show the trainer's progress bars.
    """
    from training.graph import featurize
    from training.train import TrainConfig, predict_logits, train_model

    def tensors(part: MultimodalDataset) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        feats = featurize(np.asarray(part.image), np.asarray(part.audio), np.asarray(part.text), spec=ds.spec)
        return feats, torch.from_numpy(np.asarray(part.mask)), torch.from_numpy(np.asarray(part.label))

    train, val, test = (tensors(ds.split_view(s)) for s in ("train", "val", "test"))
    results = {}
    for name, model_name in (models or BASELINES).items():
        cfg = TrainConfig(model=model_name, epochs=epochs, seed=seed)
        model, _ = train_model(cfg, len(ds.labels), train, val, progress=progress, spec=ds.spec)
        pred = predict_logits(model, test[0], test[1]).argmax(dim=1)
        results[name] = float((pred == test[2]).float().mean())
    return results
