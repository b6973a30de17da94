"""MobileNet v2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, width 1.0.

Layer names follow torchvision's, so a torchvision state dict loads with `load_pretrained`.
"""

from __future__ import annotations

import torch
from torch import nn

from mirflow.models.layers import check_dropout, check_stem, conv_bn_act, init_conv_net, positive_int

# (expansion t, output channels c, repeats n, first stride s): table 2 of the paper
INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, width_in: int, width_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = width_in * expansion
        self.use_shortcut = stride == 1 and width_in == width_out
        expand = [conv_bn_act(width_in, hidden, 1, activation=nn.ReLU6)] if expansion != 1 else []
        self.conv = nn.Sequential(
            *expand,
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, width_out, 1, bias=False),
            nn.BatchNorm2d(width_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_shortcut else self.conv(x)


class MobileNetV2(nn.Module):
    """``stem="small"`` makes the first convolution stride 1 (32x32 images keep 4x more resolution)."""

    def __init__(self, n_classes: int, in_channels: int = 3, stem: str = "imagenet", dropout: float = 0.2):
        super().__init__()
        n_classes, in_channels = positive_int("n_classes", n_classes), positive_int("in_channels", in_channels)
        self.spec = {"name": "mobilenet_v2", "n_classes": n_classes, "in_channels": in_channels,
                     "stem": check_stem(stem), "dropout": check_dropout(dropout)}
        layers: list[nn.Module] = [conv_bn_act(in_channels, 32, 3, 2 if stem == "imagenet" else 1,
                                               activation=nn.ReLU6)]
        width_in = 32
        for expansion, width, repeats, stride in INVERTED_RESIDUALS:
            for i in range(repeats):
                layers.append(InvertedResidual(width_in, width, stride if i == 0 else 1, expansion))
                width_in = width
        layers.append(conv_bn_act(width_in, 1280, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, n_classes))
        init_conv_net(self)

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled 1280 features of the last 1x1 convolution."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden_activations(x))
