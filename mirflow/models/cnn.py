"""The small spectrogram CNN (GTZAN log-mel windows)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mirflow.core.errors import ConfigError
from mirflow.models.layers import activation_layer, check_dropout, positive_int

class SpectrogramCNN(nn.Module):
    """Small 2-D CNN for (batch, channels, n_mels, frames) inputs.

    Each block is Conv(3x3, same padding) -> BatchNorm -> activation -> MaxPool(2);
    global average pooling then makes the head independent of the frame count, so
    any input with at least ``min_frames`` = 2**len(channels) frames is accepted.
    ``n_frames``, when given, is the nominal clip length, checked against that minimum.
    With ``in_channels=3, n_mels=32`` it doubles as a small CIFAR baseline.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int = 128,
        n_frames: int | None = None,
        channels: Sequence[int] = (16, 32, 64, 128),
        kernel_size: int = 3,
        dropout: float = 0.3,
        activation: str = "relu",
        in_channels: int = 1,
    ):
        super().__init__()
        n_classes, n_mels = positive_int("n_classes", n_classes), positive_int("n_mels", n_mels)
        in_channels = positive_int("in_channels", in_channels)
        kernel_size = positive_int("kernel_size", kernel_size)
        channels = tuple(positive_int("channels", width) for width in channels)
        if not channels:
            raise ConfigError("channels must name at least one convolution block")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {kernel_size}")
        dropout = check_dropout(dropout)
        if n_frames is not None:
            n_frames = positive_int("n_frames", n_frames)
        self.min_frames = 2 ** len(channels)
        if n_mels < self.min_frames:
            raise ConfigError(f"n_mels={n_mels} is too small for {len(channels)} pooling blocks "
                              f"(needs >= {self.min_frames})")
        if n_frames is not None and n_frames < self.min_frames:
            raise ConfigError(f"n_frames={n_frames} is too small for {len(channels)} pooling blocks "
                              f"(needs >= {self.min_frames})")
        self.n_mels, self.in_channels = n_mels, in_channels
        self.spec = {
            "name": "cnn",
            "n_classes": n_classes,
            "n_mels": n_mels,
            "n_frames": n_frames,
            "channels": list(channels),
            "kernel_size": kernel_size,
            "dropout": dropout,
            "activation": activation,
            "in_channels": in_channels,
        }
        blocks: list[nn.Module] = []
        for width_in, width_out in zip((in_channels, *channels), channels):
            blocks += [
                nn.Conv2d(width_in, width_out, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(width_out),
                activation_layer(activation),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], n_classes))
        # Channels-last activations take oneDNN's fast convolution and pooling kernels on
        # CPU: a training step at 128x128 costs ~0.8x the default layout's.
        self.to(memory_format=torch.channels_last)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.n_mels:
            expected = f"(batch, {self.in_channels}, {self.n_mels}, frames)"
            raise ConfigError(f"SpectrogramCNN expects input {expected}, got shape {tuple(x.shape)}")
        if x.shape[3] < self.min_frames:
            raise ConfigError(f"input has {x.shape[3]} frames; SpectrogramCNN needs >= {self.min_frames}")
        return x.contiguous(memory_format=torch.channels_last)

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features of the last convolution block: (batch, channels[-1])."""
        return self.features(self._check_input(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_activations(x))
