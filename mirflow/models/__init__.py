"""Neural network architectures, chosen by name from a JSON-able spec.

Every model outputs raw scores (logits or values); `mirflow.stages.training` picks the
loss and the output activation from the task.  Every model records its own
constructor arguments in ``.spec`` (``{"name": ..., **kwargs}``) so
``build_model(model.spec)`` rebuilds the architecture and checkpoints can carry it,
and exposes ``hidden_activations(x)``: the representation feeding its output layer
(used for stacking and ensembles).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from mirflow.core.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation={name!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _positive_int(name: str, value) -> int:
    """``value`` as a plain int (numpy integers included, so specs stay JSON-able)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_dropout(dropout: float) -> float:
    if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


class MLP(nn.Module):
    """Fully connected network: (Linear, activation, dropout) per hidden layer, then a Linear head.

    ``MLP(2669, G, hidden=(256,), dropout=0.5)`` is the AcousticBrainz per-taxonomy network;
    the default hidden sizes are the GTZAN tabular network of report 001.
    ``hidden=()`` gives a linear model whose hidden activations are its inputs.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: Sequence[int] = (90, 70, 50),
        dropout: float = 0.2,
        activation: str = "relu",
    ):
        super().__init__()
        n_in, n_out = _positive_int("n_in", n_in), _positive_int("n_out", n_out)
        hidden = tuple(_positive_int("hidden", size) for size in hidden)
        dropout = _check_dropout(dropout)
        self.spec = {
            "name": "mlp",
            "n_in": n_in,
            "n_out": n_out,
            "hidden": list(hidden),
            "dropout": dropout,
            "activation": activation,
        }
        layers: list[nn.Module] = []
        widths = (n_in, *hidden)
        for i, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
            if i > 0:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(width_in, width_out), _activation(activation)]
        self.body = nn.Sequential(*layers)
        # No dropout between the inputs and a hidden-less head: that would drop features.
        self.head = nn.Sequential(nn.Dropout(dropout if hidden else 0.0), nn.Linear(widths[-1], n_out))

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last hidden layer (after its activation, before dropout)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


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
        n_classes, n_mels = _positive_int("n_classes", n_classes), _positive_int("n_mels", n_mels)
        in_channels = _positive_int("in_channels", in_channels)
        kernel_size = _positive_int("kernel_size", kernel_size)
        channels = tuple(_positive_int("channels", width) for width in channels)
        if not channels:
            raise ConfigError("channels must name at least one convolution block")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {kernel_size}")
        dropout = _check_dropout(dropout)
        if n_frames is not None:
            n_frames = _positive_int("n_frames", n_frames)
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
                _activation(activation),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], n_classes))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.n_mels:
            expected = f"(batch, {self.in_channels}, {self.n_mels}, frames)"
            raise ConfigError(f"SpectrogramCNN expects input {expected}, got shape {tuple(x.shape)}")
        if x.shape[3] < self.min_frames:
            raise ConfigError(f"input has {x.shape[3]} frames; SpectrogramCNN needs >= {self.min_frames}")
        return x

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features of the last convolution block: (batch, channels[-1])."""
        return self.features(self._check_input(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_activations(x))


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SpectrogramCNN}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def build_model(spec: dict, *, seed: int | None = None) -> nn.Module:
    """Build ``MODELS[spec["name"]](**rest of spec)``.

    With ``seed``, weights are initialised from that seed without disturbing the
    global torch RNG, so the same (spec, seed) always gives the same initial model.
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"model spec must be a dict with a 'name' key, got {spec!r}")
    kwargs = {key: value for key, value in spec.items() if key != "name"}
    name = spec["name"]
    if name not in MODELS:
        raise ConfigError(f"model name {name!r} is unknown; choose one of {sorted(MODELS)}")
    model_class = MODELS[name]
    try:
        inspect.signature(model_class).bind(**kwargs)
    except TypeError as error:
        raise ConfigError(f"model spec for {name!r} is invalid: {error}") from None
    if seed is None:
        return model_class(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(**kwargs)
