"""Checks and activations shared by the networks of `mirflow.models`."""

from __future__ import annotations

import numbers

from torch import nn

from mirflow.core.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation={name!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def positive_int(name: str, value) -> int:
    """``value`` as a plain int (numpy integers included, so specs stay JSON-able)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_dropout(dropout: float) -> float:
    if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


STEMS = ("imagenet", "small")


def check_stem(stem: str) -> str:
    """``imagenet``: 7x7 stride-2 convolution (+ max-pool); ``small``: 3x3 stride 1, no pooling."""
    if stem not in STEMS:
        raise ConfigError(f"stem={stem!r} is unknown; choose one of {list(STEMS)}")
    return stem


def conv_bn_act(width_in: int, width_out: int, kernel_size: int, stride: int = 1, groups: int = 1,
                activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> activation; indexed 0, 1, 2 as torchvision's Conv2dNormActivation."""
    return nn.Sequential(
        nn.Conv2d(width_in, width_out, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(width_out),
        activation(inplace=True),
    )


def init_conv_net(model: nn.Module) -> None:
    """He initialisation for convolutions, BatchNorm at identity, zero biases (as the zoo's papers)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
