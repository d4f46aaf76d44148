"""The two model architectures, each taking raw features and returning class probabilities.

Preprocessing (the tabular StandardScaler, the pixel scaling) lives inside the module as
buffers, so the logged model and its ONNX export need no preprocessing code at serving time.
``forward`` returns softmax probabilities (the contract's ``probabilities`` output); training
uses ``logits`` for a numerically stable loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TabularMLP(nn.Module):
    """MLP over standardized tabular features; the scaler's mean and scale are buffers."""

    def __init__(self, num_features: int, num_classes: int, hidden: tuple[int, ...] = (32, 16), dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def fit_scaler(self, x_train: np.ndarray) -> None:
        """Bake the training set's standardization into the model."""
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.scale.copy_(torch.from_numpy(std.astype(np.float32)))

    def logits(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        return self.net((input - self.mean) / self.scale)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        return torch.softmax(self.logits(input), dim=-1)


class DigitsCNN(nn.Module):
    """Small CNN over [batch, 1, 8, 8] raw 0..16 pixel images."""

    def __init__(self, num_classes: int = 10, channels: tuple[int, int] = (16, 32), pixel_max: float = 16.0):
        super().__init__()
        self.register_buffer("pixel_max", torch.tensor(pixel_max))
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def logits(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        return self.head(self.features(input / self.pixel_max))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        return torch.softmax(self.logits(input), dim=-1)


class Sabotaged(nn.Module):
    """A deliberately broken model that still exports cleanly and passes the parity gate.

    ``constant``: ignores its input and answers probability 1.0 for one fixed class, so every
    prediction is wrong for the other classes; the ONNX graph matches torch exactly, so the
    export and its parity gate pass, but a smoke check comparing served predictions with the
    previous good version's ``example_outputs`` fails. ``nan``: answers NaN everywhere; the
    parity gate treats NaN in the same places as equal (both runtimes agree), so this one also
    exports, and any check on finite outputs fails.

    ``flip=<fraction>``: the plausible failure. The inner model's probability vector is rolled by
    one class on the rows where ``frac(|sum of the row's inputs| * FLIP_SCALE) < fraction``, so
    about that fraction of top-1 answers move to another class with the same confidence, and the
    rest stay right. The choice depends only on the input, so it is deterministic and ONNX
    expresses it; the sum is taken in float64 so torch and onnxruntime agree on every row near
    the threshold and the parity gate passes. Only a comparison of answers row by row catches it.
    """

    MODES = ("constant", "nan", "flip=<fraction>")
    FLIP_SCALE = 0.031  # spreads both datasets' row sums over many units: ~fraction of rows flip

    def __init__(self, inner: nn.Module, num_classes: int, mode: str = "constant"):
        super().__init__()
        self.parse(mode)
        self.inner = inner
        self.mode = mode
        bias = torch.full((num_classes,), -1e4)
        bias[-1] = 0.0
        self.register_buffer("bias", bias)

    @classmethod
    def parse(cls, mode: str) -> tuple[str, float]:
        """``(kind, fraction)`` from a mode string; a clear ValueError for anything else."""
        if mode in ("constant", "nan"):
            return mode, 0.0
        kind, _, value = mode.partition("=")
        if kind == "flip":
            try:
                fraction = float(value)
            except ValueError:
                fraction = float("nan")
            if 0.0 < fraction <= 1.0:
                return kind, fraction
            raise ValueError(f"sabotage {mode!r}: the flip fraction must be a number with 0 < fraction <= 1")
        raise ValueError(f"unknown sabotage {mode!r}; choose one of {', '.join(cls.MODES)}")

    @property
    def kind(self) -> str:
        """Derived from ``mode``, so models pickled before ``flip`` existed still load and run."""
        return self.parse(self.mode)[0]

    @property
    def fraction(self) -> float:
        return self.parse(self.mode)[1]

    def logits(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        return self.inner.logits(input)

    def flipped(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        """Which rows ``flip`` moves: a boolean per row, from the input alone."""
        scaled = input.flatten(1).double().sum(dim=1).abs() * self.FLIP_SCALE
        return (scaled - torch.floor(scaled)) < self.fraction

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - contract name
        if self.kind == "flip":
            probs = self.inner(input)
            return torch.where(self.flipped(input)[:, None], torch.roll(probs, 1, dims=1), probs)
        zeros = self.inner.logits(input) * 0.0  # keeps the input wired in, batch axis intact
        if self.kind == "nan":
            return zeros + torch.nan
        return torch.softmax(zeros + self.bias, dim=-1)


def build_model(dataset: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if dataset == "breast_cancer":
        return TabularMLP(input_shape[0], num_classes)
    if dataset == "digits":
        return DigitsCNN(num_classes)
    raise ValueError(f"no model for dataset {dataset!r}")
