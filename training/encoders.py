"""Per-modality encoders: front-end features -> a ``[B, FEATURE_DIM]`` vector.

Small on purpose: the default models must train in minutes on 2 CPU cores and answer in well
under a millisecond. Each encoder takes the output of its front end (see ``frontends.py``) and
is built for one input spec (:class:`app.manifest.DecodeParams`): depth and stride grow with the
input size, so a 224x224 photo or a 5 s clip costs a few more cheap stages, not a wider network,
and the digits' spec (28x28 grey, 1 s at 16 kHz, 64 bytes) gives exactly the original layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from app.manifest import DecodeParams
from training.frontends import N_MELS, n_frames

FEATURE_DIM = 64
DIGITS = DecodeParams()
IMAGE_CHANNELS = (16, 32, 64, 64, 64, 64, 64)
"""Conv widths by stage; the digits' 28x28 uses the first two."""
MAX_IMAGE_SIDE = 8
"""Stages halve the picture until its side is at most this (28 -> 14 -> 7)."""
FULL_RES_SIDE = 64
"""Above this side a stage convolves with stride 2 instead of convolving then pooling: 4x fewer
MACs where the picture is large and the detail is pooled away anyway."""
MAX_FRAMES = 16
"""Audio stages halve the log-mel frames until at most this many are left (99 -> 49 -> 24 -> 12)."""
TEXT_BASE_BYTES = 64
"""The text encoder's two convolutions suit 64 bytes; each doubling beyond adds a dilated layer."""


def halvings(side: int, limit: int) -> int:
    """How many times ``side`` is floor-halved before it is at most ``limit`` (at least once)."""
    n = 0
    while side > limit or n == 0:
        side //= 2
        n += 1
    return n


class ImageEncoder(nn.Module):
    """Conv blocks over the square picture, one per halving (the digits: two, 28 -> 14 -> 7, the
    pytorch/examples MNIST shape, slimmer)."""

    def __init__(self, dim: int = FEATURE_DIM, spec: DecodeParams = DIGITS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        side, width = spec.image_size, int(spec.image_channels)
        for stage in range(halvings(side, MAX_IMAGE_SIDE)):
            out = IMAGE_CHANNELS[min(stage, len(IMAGE_CHANNELS) - 1)]
            if side > FULL_RES_SIDE:
                layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                side = (side + 1) // 2
            else:
                layers += [
                    nn.Conv2d(width, out, 3, padding=1),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                ]
                side //= 2
            width = out
        if spec.image_normalize:  # a re-centred digit: where the ink is matters, keep the layout
            head: list[nn.Module] = [nn.Flatten(), nn.Dropout(0.2), nn.Linear(width * side * side, dim)]
        else:  # a picture: the object can be anywhere, so pool over positions
            head = [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(width, dim)]
        self.net = nn.Sequential(*layers, *head, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioEncoder(nn.Module):
    """A CNN over the log-mel spectrogram ``[B, 1, 40, frames]``, convolving along time with the
    mel bands as channels (the keyword-spotting layout, e.g. TC-ResNet): 3x fewer MACs than
    2-D convolutions of the same width, and faster in onnxruntime. One pooled stage per halving
    of the frames (the digits' 99 frames: three).
    """

    def __init__(self, dim: int = FEATURE_DIM, spec: DecodeParams = DIGITS) -> None:
        super().__init__()
        frames = n_frames(spec.audio_samples, spec.sample_rate)
        layers: list[nn.Module] = [nn.BatchNorm1d(N_MELS)]
        width = N_MELS
        for stage in range(halvings(frames, MAX_FRAMES)):
            k = 5 if stage < 2 else 3
            layers += [
                nn.Conv1d(width, 64, k, padding=k // 2),
                nn.BatchNorm1d(64),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
            width, frames = 64, frames // 2
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * frames, dim), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.squeeze(1))


class TextEncoder(nn.Module):
    """Byte embedding + Conv1d layers + max over the non-padding positions.

    Two convolutions for up to 64 bytes; longer specs get one more layer per doubling, dilated
    2, 4, 8 (at most three), so the receptive field grows with the text at linear cost.
    ``nn.Embedding`` exports as a single Gather; EmbeddingBag would export as Loop ops.
    """

    def __init__(self, dim: int = FEATURE_DIM, embed: int = 32, spec: DecodeParams = DIGITS) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, embed)
        extra = min(3, max(0, math.ceil(math.log2(spec.text_bytes / TEXT_BASE_BYTES))))
        layers: list[nn.Module] = [
            nn.Conv1d(embed, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(64, 64, 3, padding=1),
            nn.ReLU(),
        ]
        for i in range(extra):
            d = 2 ** (i + 1)
            layers += [nn.Conv1d(64, 64, 3, padding=d, dilation=d), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, dim), nn.ReLU())

    def forward(self, ids: torch.Tensor, nonpad: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(ids).transpose(1, 2))  # [B, 64, L]
        keep = nonpad.unsqueeze(1)
        h = h * keep - (1.0 - keep) * 1e4  # padding never wins the max
        pooled = h.max(dim=2).values
        return self.proj(torch.clamp(pooled, min=-1e3))
