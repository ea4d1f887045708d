"""Per-modality encoders: front-end features -> a ``[B, FEATURE_DIM]`` vector.

Small on purpose: the default models must train in minutes on 2 CPU cores and answer in well
under a millisecond. Each encoder takes the output of its front end (see ``frontends.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from training.frontends import FRAMES, N_MELS

FEATURE_DIM = 64


class ImageEncoder(nn.Module):
    """Two conv blocks over the 28x28 digit (the pytorch/examples MNIST shape, slimmer)."""

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(32 * 7 * 7, dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioEncoder(nn.Module):
    """A CNN over the log-mel spectrogram ``[B, 1, 40, 99]``, convolving along time with the
    mel bands as channels (the keyword-spotting layout, e.g. TC-ResNet): 3x fewer MACs than
    2-D convolutions of the same width, and faster in onnxruntime.
    """

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(N_MELS),
            nn.Conv1d(N_MELS, 64, 5, padding=2),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.MaxPool1d(2),  # 49
            nn.Conv1d(64, 64, 5, padding=2),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.MaxPool1d(2),  # 24
            nn.Conv1d(64, 64, 3, padding=1),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.MaxPool1d(2),  # 12
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(64 * (FRAMES // 8), dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.squeeze(1))


class TextEncoder(nn.Module):
    """Byte embedding + two Conv1d layers + max over the non-padding positions.

    ``nn.Embedding`` exports as a single Gather; EmbeddingBag would export as Loop ops.
    """

    def __init__(self, dim: int = FEATURE_DIM, embed: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, embed)
        self.conv = nn.Sequential(
            nn.Conv1d(embed, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(64, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.proj = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, dim), nn.ReLU())

    def forward(self, ids: torch.Tensor, nonpad: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(ids).transpose(1, 2))  # [B, 64, L]
        keep = nonpad.unsqueeze(1)
        h = h * keep - (1.0 - keep) * 1e4  # padding never wins the max
        pooled = h.max(dim=2).values
        return self.proj(torch.clamp(pooled, min=-1e3))
