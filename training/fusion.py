"""Fusion models: early (data-level), intermediate (feature-level), late (decision-level), gated,
and unimodal baselines.

Every model maps front-end features plus a presence ``mask`` ``[B, 3]`` (image, audio, text) to
class logits. A masked modality contributes nothing: its features are zeroed (early,
intermediate), its vote gets zero weight (late) or its gate is closed (gated). Models are trained
with modality dropout so any non-empty subset of modalities is a normal input.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from app.media import MODALITIES
from training.encoders import FEATURE_DIM, AudioEncoder, ImageEncoder, TextEncoder
from training.frontends import FRAMES, N_MELS

Features = dict[str, torch.Tensor]
"""Front-end outputs: ``image`` [B,1,28,28], ``audio`` [B,1,40,99], ``text`` ids [B,64] int64,
``text_nonpad`` [B,64]."""

NGRAM_BUCKETS = 1 << 14  # hashed byte bigrams / trigrams of the early model's text block
FUSIONS = ("early", "intermediate", "late", "gated")
UNIMODAL = {"image_only": "image", "audio_only": "audio", "text_only": "text"}
ModelName = Literal["early", "intermediate", "late", "gated", "image_only", "audio_only", "text_only"]


def _encoders() -> nn.ModuleDict:
    return nn.ModuleDict({"image": ImageEncoder(), "audio": AudioEncoder(), "text": TextEncoder()})


def _encode(encoders: nn.ModuleDict, feats: Features) -> list[torch.Tensor]:
    return [
        encoders["image"](feats["image"]),
        encoders["audio"](feats["audio"]),
        encoders["text"](feats["text"], feats["text_nonpad"]),
    ]


class EarlyFusion(nn.Module):
    """Data-level: the low-level inputs of all modalities in one vector, one network.

    Blocks: normalised pixels, a time-pooled log-mel spectrogram, and the text as a bag of
    byte unigram + bigram embeddings (position-free, like fastText). Each block is normalised
    on its own and zeroed when its modality is missing, so a missing block does not shift the
    statistics of the others; blocks and mask are concatenated and a single MLP learns from it.
    """

    kind = "early"

    def __init__(self, n_classes: int, byte_dim: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.unigram = nn.Embedding(256, byte_dim)
        self.bigram = nn.Embedding(NGRAM_BUCKETS, byte_dim)
        self.trigram = nn.Embedding(NGRAM_BUCKETS, byte_dim)
        self.image_pool = nn.AvgPool2d(2)  # 14x14: fewer inputs, less for the MLP to overfit
        self.audio_pool = nn.AvgPool2d((1, 4))  # 40 mels x 24 frames of 40 ms
        sizes = (14 * 14, N_MELS * (FRAMES // 4), byte_dim)
        self.norms = nn.ModuleList([nn.LayerNorm(n) for n in sizes])
        width = sum(sizes) + 3
        self.mlp = nn.Sequential(
            nn.Dropout(0.2),
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(hidden, 128),
            nn.ReLU(),
            nn.Linear(128, n_classes),
        )

    def _bag_of_bytes(self, ids: torch.Tensor, nonpad: torch.Tensor) -> torch.Tensor:
        pairs = ids[:, :-1] * 256 + ids[:, 1:]
        pair_mask = nonpad[:, :-1] * nonpad[:, 1:]
        triples = (pairs[:, :-1] * 257 + ids[:, 2:]) % NGRAM_BUCKETS  # hashed; < 2**31, no overflow
        triple_mask = pair_mask[:, :-1] * nonpad[:, 2:]
        total = (
            (self.unigram(ids) * nonpad.unsqueeze(2)).sum(1)
            + (self.bigram(pairs % NGRAM_BUCKETS) * pair_mask.unsqueeze(2)).sum(1)
            + (self.trigram(triples) * triple_mask.unsqueeze(2)).sum(1)
        )
        count = (
            nonpad.sum(1, keepdim=True) + pair_mask.sum(1, keepdim=True) + triple_mask.sum(1, keepdim=True)
        )
        return total / count.clamp_min(1.0)

    def forward(self, feats: Features, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b = mask.shape[0]
        blocks = [
            self.image_pool(feats["image"]).reshape(b, -1),
            self.audio_pool(feats["audio"]).reshape(b, -1),
            self._bag_of_bytes(feats["text"], feats["text_nonpad"]),
        ]
        parts = [
            norm(x) * mask[:, i : i + 1] for i, (norm, x) in enumerate(zip(self.norms, blocks, strict=True))
        ]
        return {"logits": self.mlp(torch.cat([*parts, mask], dim=1))}


class IntermediateFusion(nn.Module):
    """Feature-level: one encoder per modality, masked features concatenated, a joint head."""

    kind = "intermediate"

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.encoders = _encoders()
        self.head = nn.Sequential(
            nn.Linear(3 * FEATURE_DIM + 3, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, n_classes)
        )

    def forward(self, feats: Features, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = [f * mask[:, i : i + 1] for i, f in enumerate(_encode(self.encoders, feats))]
        return {"logits": self.head(torch.cat([*parts, mask], dim=1))}


class LateFusion(nn.Module):
    """Decision-level: a full classifier per modality; their log-probabilities are averaged with
    learned weights renormalised over the modalities present.

    With a single modality present the output equals that modality's own log-probabilities.
    ``per_modality`` is returned for the auxiliary per-branch losses used in training.
    """

    kind = "late"

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.encoders = _encoders()
        self.heads = nn.ModuleList([nn.Linear(FEATURE_DIM, n_classes) for _ in MODALITIES])
        self.weight_logits = nn.Parameter(torch.zeros(len(MODALITIES)))

    def forward(self, feats: Features, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        logps = [
            torch.log_softmax(head(f), dim=1)
            for head, f in zip(self.heads, _encode(self.encoders, feats), strict=True)
        ]
        stacked = torch.stack(logps, dim=1)  # [B, 3, C]
        w = torch.softmax(self.weight_logits, dim=0).unsqueeze(0) * mask  # [B, 3]
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return {"logits": (w.unsqueeze(2) * stacked).sum(dim=1), "per_modality": stacked}


class GatedFusion(nn.Module):
    """Attention over modalities: each modality's projected feature gets a softmax gate computed
    from the features themselves; missing modalities get gate 0. The gates (``weights``) are
    exported and double as the per-modality explanation.
    """

    kind = "gated"

    def __init__(self, n_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.encoders = _encoders()
        self.proj = nn.ModuleList([nn.Linear(FEATURE_DIM, hidden) for _ in MODALITIES])
        self.score = nn.Sequential(nn.Linear(3 * hidden + 3, 32), nn.Tanh(), nn.Linear(32, 3))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(hidden, n_classes))

    def forward(self, feats: Features, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hs = [
            torch.tanh(p(f)) * mask[:, i : i + 1]
            for i, (p, f) in enumerate(zip(self.proj, _encode(self.encoders, feats), strict=True))
        ]
        scores = self.score(torch.cat([*hs, mask], dim=1)) + (mask - 1.0) * 1e4
        weights = torch.softmax(scores, dim=1) * mask
        fused = (torch.stack(hs, dim=1) * weights.unsqueeze(2)).sum(dim=1)
        return {"logits": self.head(fused), "weights": weights}


class Unimodal(nn.Module):
    """One modality's encoder and a linear head: the baseline every fusion is measured against."""

    kind = "unimodal"

    def __init__(self, n_classes: int, modality: str) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.modality = modality
        self.encoder = _encoders()[modality]
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, n_classes))

    def forward(self, feats: Features, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.modality == "text":
            f = self.encoder(feats["text"], feats["text_nonpad"])
        else:
            f = self.encoder(feats[self.modality])
        return {"logits": self.head(f)}


def build_model(name: str, n_classes: int) -> nn.Module:
    """The model called ``name`` (a fusion kind or ``<modality>_only``)."""
    fusions: dict[str, type[nn.Module]] = {
        "early": EarlyFusion,
        "intermediate": IntermediateFusion,
        "late": LateFusion,
        "gated": GatedFusion,
    }
    if name in fusions:
        return fusions[name](n_classes)
    if name in UNIMODAL:
        return Unimodal(n_classes, UNIMODAL[name])
    raise ValueError(f"unknown model {name!r}; choose from {[*fusions, *UNIMODAL]}")


def model_modalities(name: str) -> tuple[str, ...]:
    """Which modalities the model called ``name`` consumes."""
    return (UNIMODAL[name],) if name in UNIMODAL else MODALITIES
