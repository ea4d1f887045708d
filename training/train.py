"""Training loop: dataclass config, ``train_one_epoch`` / ``evaluate`` / ``train_model``.

Fusion models are trained so that any subset of modalities, and a modality that lies, is a
normal input:

- **subset-balanced modality dropout**: a fraction of the rows sees one of the 6 proper
  non-empty subsets of its modalities, each equally often;
- **auxiliary per-modality losses** on every fusion's unimodal paths (``per_modality``), so
  one modality alone is answered as well as by a unimodal baseline;
- **modality-conflict augmentation**: a fraction of the rows with two or more modalities gets
  one of them replaced by another class's sample (only with all three present, so two still
  agree) or by pure noise, label unchanged. The fused answer must follow the others (gated
  learns to gate the odd one down); a swapped modality's own path is taught the other class,
  a noise one gets no per-modality loss.
- **online heavy noise** (every model, data sets that record their noise levels): a share of
  each batch is re-noised at fresh benchmark-range levels before anything else
  (:mod:`training.online_noise`).

The checkpoint kept is the epoch with the best validation accuracy (averaged over all modality
subsets for fusions).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from app.manifest import DecodeParams
from training import EPOCHS
from training.encoders import DIGITS
from training.fusion import SUBSETS, UNIMODAL, Features, build_model
from training.graph import featurize
from training.online_noise import OnlineNoise

__all__ = ["SUBSETS", "TrainConfig", "evaluate", "predict_logits", "train_model"]

EPOCH_MULTIPLIER = {"early": 2}
"""The early-fusion MLP costs ~1/5 of an encoder model per epoch and still improves after 12
epochs (measured: 12 -> 24 epochs, test accuracy on audio+text 65 -> 68%), so it gets twice
as many."""

FEATURE_KEYS = (("image",), ("audio",), ("text", "text_nonpad"))  # the features of each modality
NOISE = -1  # per-modality target of a modality replaced by noise: no class, no loss


@dataclass
class TrainConfig:
    """Everything that decides a trained model; saved into its manifest."""

    model: str
    epochs: int = EPOCHS
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    modality_dropout: float = 0.75  # probability a row sees a proper subset (each of the 6 equally)
    conflict: float = 0.2  # fraction of multi-modality rows with one modality swapped or noised
    aux_weight: float = 1.0  # weight of each per-modality (unimodal path) loss
    online_noise: float = 0.0  # share of each batch re-noised at heavy levels (training.online_noise.SHARE)
    threads: int = 1  # torch intra-op threads; >1 collapses when another process shares the cores
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _take(feats: Features, idx: torch.Tensor) -> Features:
    return {k: v[idx] for k, v in feats.items()}


def drop_modalities(mask: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Replace a fraction ``p`` of the rows' masks by one of the proper non-empty subsets, drawn
    uniformly (of what is present: a row missing a modality can only lose more)."""
    proper = torch.tensor(SUBSETS[:-1], dtype=mask.dtype)
    choice = proper[torch.randint(len(proper), (mask.shape[0],), generator=gen)]
    dropped = mask * choice
    use = (torch.rand(mask.shape[0], generator=gen) < p) & (dropped.sum(dim=1) > 0)
    return torch.where(use.unsqueeze(1), dropped, mask)


def noise_bank(n: int, seed: int, spec: DecodeParams = DIGITS) -> Features:
    """Featurised pure-noise inputs for conflict augmentation, at input ``spec``: random pixels,
    white noise at levels from near-silent to loud, random bytes of random length."""
    rng = np.random.default_rng(seed)
    side, length = spec.image_size, spec.text_bytes
    pixels = rng.random((n, side, side)) * rng.uniform(0.1, 1.0, (n, 1, 1)) * 255
    if spec.image_channels == 3:  # same draws as grey, then a random tint per picture
        pixels = pixels[..., None] * rng.uniform(0.3, 1.0, (n, 1, 1, 3))
    image = pixels.astype(np.uint8)
    amplitude = 10.0 ** rng.uniform(-3.0, -0.5, (n, 1))
    audio = (rng.standard_normal((n, spec.audio_samples)) * amplitude).clip(-1, 1).astype(np.float32)
    used = rng.integers(1, length + 1, (n, 1))
    text = np.where(np.arange(length) < used, rng.integers(1, 256, (n, length)), 0).astype(np.uint8)
    return featurize(image, audio, text, spec=spec)


def make_conflicts(
    feats: Features,
    mask: torch.Tensor,
    labels: torch.Tensor,
    p: float,
    bank: Features,
    gen: torch.Generator,
) -> tuple[Features, torch.Tensor]:
    """Swap one present modality of a fraction ``p`` of the multi-modality rows.

    Returns the new features and the per-modality targets ``[B, 3]``: the row's label, the
    swapped-in sample's label, or :data:`NOISE`.
    """
    b = labels.shape[0]
    targets = labels.view(-1, 1).repeat(1, 3)
    present = mask.sum(dim=1)
    chosen = (torch.rand(b, generator=gen) < p) & (present >= 2)
    which = ((torch.rand(b, 3, generator=gen) + 1.0) * mask).argmax(dim=1)  # a present modality
    src = (torch.arange(b) + int(torch.randint(1, max(b, 2), (1,), generator=gen))) % b
    swap = (
        chosen
        & (present == 3)
        & (torch.rand(b, generator=gen) < 0.5)
        & (labels[src] != labels)
        & (mask[src, which] > 0)
    )
    noise = chosen & ~swap
    noise_pick = torch.randint(bank["image"].shape[0], (b,), generator=gen)
    out = dict(feats)
    for m, keys in enumerate(FEATURE_KEYS):
        rows_swap = torch.nonzero(swap & (which == m)).flatten()
        rows_noise = torch.nonzero(noise & (which == m)).flatten()
        if len(rows_swap) == 0 and len(rows_noise) == 0:
            continue
        for key in keys:
            x = out[key].clone()
            x[rows_swap] = feats[key][src[rows_swap]]
            x[rows_noise] = bank[key][noise_pick[rows_noise]]
            out[key] = x
        targets[rows_swap, m] = labels[src[rows_swap]]
        targets[rows_noise, m] = NOISE
    return out, targets


def per_modality_loss(logits: torch.Tensor, targets: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each modality's own path against its target, ``logits`` ``[B, 3, C]``.

    Only where the modality is present and is not noise (:data:`NOISE`): teaching a path
    "noise means uniform" also taught it to give up on heavily noisy speech, which is the
    benchmark (measured, late fusion: audio alone 38.6 -> 42.5%, all three 82.6 -> 84.0%, and
    the conflict-following rate unchanged at 98-99%). Summed over modalities and averaged over
    rows, so each path is trained as hard as a unimodal baseline (averaging over modalities
    left late's audio path 13 points below ``audio_only`` on the benchmark).
    """
    keep = present * (targets != NOISE)
    picked = torch.log_softmax(logits, dim=2).gather(2, targets.clamp_min(0).unsqueeze(2)).squeeze(2)
    return -(picked * keep).sum() / max(keep.shape[0], 1)


def train_one_epoch(
    model: nn.Module,
    feats: Features,
    mask: torch.Tensor,
    labels: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainConfig,
    gen: torch.Generator,
    bank: Features | None = None,
    noise: OnlineNoise | None = None,
) -> float:
    """One pass over the training features; returns the mean loss."""
    model.train()
    order = torch.randperm(len(labels), generator=gen)
    total, seen = 0.0, 0
    unimodal = cfg.model in UNIMODAL
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        batch, present, y = _take(feats, idx), mask[idx], labels[idx]
        if noise is not None:
            batch = noise(batch, idx, gen, only=UNIMODAL.get(cfg.model))
        if unimodal:
            out = model(batch, present)
            loss = nn.functional.cross_entropy(out["logits"], y)
        else:
            batch_mask = drop_modalities(present, cfg.modality_dropout, gen)
            targets = y.view(-1, 1).repeat(1, 3)
            if bank is not None and cfg.conflict > 0:
                batch, targets = make_conflicts(batch, batch_mask, y, cfg.conflict, bank, gen)
            out = model(batch, batch_mask, branches=True)
            loss = nn.functional.cross_entropy(out["logits"], y)
            loss = loss + cfg.aux_weight * per_modality_loss(out["per_modality"], targets, present)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(seen, 1)


@torch.no_grad()
def predict_logits(
    model: nn.Module, feats: Features, mask: torch.Tensor, batch: int = 1000, key: str = "logits"
) -> torch.Tensor:
    """Output ``key`` (``logits`` or, for fusions, ``per_modality``) for every row, in eval mode."""
    model.eval()
    n = mask.shape[0]
    kwargs = {"branches": True} if key != "logits" else {}
    chunks = [
        model(_take(feats, torch.arange(i, min(i + batch, n))), mask[i : i + batch], **kwargs)[key]
        for i in range(0, n, batch)
    ]
    return torch.cat(chunks)


def cycled_masks(mask: torch.Tensor) -> torch.Tensor:
    """Row ``i`` restricted to subset ``i mod 7`` (kept whole where that leaves nothing)."""
    subsets = torch.tensor(SUBSETS, dtype=mask.dtype)[torch.arange(mask.shape[0]) % len(SUBSETS)]
    restricted = mask * subsets
    return torch.where((restricted.sum(dim=1) > 0).unsqueeze(1), restricted, mask)


def evaluate(model: nn.Module, feats: Features, mask: torch.Tensor, labels: torch.Tensor, name: str) -> float:
    """Validation accuracy. For fusion models row ``i`` is scored with modality subset ``i mod 7``
    (restricted to what the row has), an unbiased estimate of the accuracy averaged over subsets
    at the cost of a single pass.
    """
    if name not in UNIMODAL:
        mask = cycled_masks(mask)
    return float((predict_logits(model, feats, mask).argmax(1) == labels).float().mean())


def train_model(
    cfg: TrainConfig,
    n_classes: int,
    train: tuple[Features, torch.Tensor, torch.Tensor],
    val: tuple[Features, torch.Tensor, torch.Tensor],
    progress: bool = True,
    spec: DecodeParams = DIGITS,
    noise: OnlineNoise | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``cfg.model`` for input ``spec``; returns the best-validation model and its history.

    ``noise`` re-noises a share of each batch of ``train`` (its rows, in order); ``cfg.online_noise``
    must be its share, so the manifest says what was done.

    With ``progress`` a bar per model shows the epoch, loss and validation accuracy, and stays
    as one line per model when it is done.
    """
    if (noise.share if noise else 0.0) != cfg.online_noise:
        raise ValueError(
            f"cfg.online_noise is {cfg.online_noise} but the noise given has share {noise and noise.share}"
        )
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.model, n_classes, spec)
    bank = None if cfg.model in UNIMODAL or cfg.conflict <= 0 else noise_bank(256, cfg.seed, spec)
    feats, mask, labels = train
    steps = cfg.epochs * ((len(labels) + cfg.batch_size - 1) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1))
    best, best_state, history = -1.0, copy.deepcopy(model.state_dict()), []
    start = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=f"{cfg.model:>13}", disable=not progress, leave=True, unit="epoch")
    for epoch in bar:
        loss = train_one_epoch(model, feats, mask, labels, opt, sched, cfg, gen, bank, noise)
        score = evaluate(model, *val, cfg.model)
        history.append({"epoch": epoch + 1, "loss": round(loss, 4), "val": round(score, 4)})
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{score:.3f}", best=f"{best:.3f}")
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    info = {
        "history": history,
        "best_val": round(best, 4),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    return model, info
