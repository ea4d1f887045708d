"""The exported graph: raw contract tensors -> front ends -> model -> outputs.

Training runs the (fixed) front ends once over the data set and trains on their features;
export wraps the trained model with the same front-end modules, so the ONNX graph takes the
serving contract's raw tensors (DESIGN §2).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import nn

from app.manifest import DecodeParams
from training.encoders import DIGITS
from training.frontends import N_MELS, ImageFrontend, LogMel, TextFrontend, n_frames
from training.fusion import Features


class FusionGraph(nn.Module):
    """``(image, audio, text, mask) -> logits [, weights]`` for the fusion models."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core
        self.spec = cast(DecodeParams, core.spec)
        self.image_fe = ImageFrontend()
        self.audio_fe = LogMel(self.spec.sample_rate, self.spec.audio_normalize)
        self.text_fe = TextFrontend()
        self.extra_outputs = ["weights"] if core.kind == "gated" else []

    def forward(
        self, image: torch.Tensor, audio: torch.Tensor, text: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        ids, nonpad = self.text_fe(text)
        feats = {
            "image": self.image_fe(image),
            "audio": self.audio_fe(audio),
            "text": ids,
            "text_nonpad": nonpad,
        }
        out = self.core(feats, mask)
        if self.extra_outputs:
            return (out["logits"], *(out[name] for name in self.extra_outputs))
        return out["logits"]


class UnimodalGraph(nn.Module):
    """``(<modality>) -> logits`` for a unimodal baseline: no mask, one input."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core
        self.modality = str(core.modality)
        self.spec = cast(DecodeParams, core.spec)
        self.extra_outputs: list[str] = []
        self.frontend: nn.Module = (
            LogMel(self.spec.sample_rate, self.spec.audio_normalize)
            if self.modality == "audio"
            else {"image": ImageFrontend, "text": TextFrontend}[self.modality]()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "text":
            ids, nonpad = self.frontend(x)
            feats = {"text": ids, "text_nonpad": nonpad}
        else:
            feats = {self.modality: self.frontend(x)}
        mask = torch.ones(x.shape[0], 3)
        return self.core(feats, mask)["logits"]


def wrap(core: nn.Module) -> FusionGraph | UnimodalGraph:
    """The exportable graph for a trained core model."""
    return UnimodalGraph(core) if core.kind == "unimodal" else FusionGraph(core)


@torch.no_grad()
def featurize(
    image: np.ndarray, audio: np.ndarray, text: np.ndarray, chunk: int = 1000, spec: DecodeParams = DIGITS
) -> Features:
    """Run the fixed front ends over whole arrays once (the expensive one is the log-mel)."""
    image_fe, audio_fe, text_fe = (
        ImageFrontend(),
        LogMel(spec.sample_rate, spec.audio_normalize),
        TextFrontend(),
    )
    mels = [
        audio_fe(torch.from_numpy(np.ascontiguousarray(audio[i : i + chunk])))
        for i in range(0, len(audio), chunk)
    ]
    ids, nonpad = text_fe(torch.from_numpy(np.ascontiguousarray(text)))
    return {
        "image": image_fe(torch.from_numpy(np.ascontiguousarray(image))),
        "audio": torch.cat(mels)
        if mels
        else torch.zeros(0, 1, N_MELS, n_frames(spec.audio_samples, spec.sample_rate)),
        "text": ids,
        "text_nonpad": nonpad,
    }
