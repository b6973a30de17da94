"""DenseNet-201 (Huang et al. 2017): growth rate 32, blocks of 6, 12, 48 and 32 layers, BC variant.

Layer names follow torchvision's, so a torchvision state dict loads with `load_pretrained`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mirflow.models.layers import check_stem, init_conv_net, positive_int

GROWTH_RATE, BLOCKS, INITIAL_WIDTH, BOTTLENECK_FACTOR = 32, (6, 12, 48, 32), 64, 4


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to 4k channels, BN-ReLU-3x3 conv to k new channels, appended to the input."""

    def __init__(self, width_in: int):
        super().__init__()
        hidden = BOTTLENECK_FACTOR * GROWTH_RATE
        self.norm1 = nn.BatchNorm2d(width_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(width_in, hidden, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, GROWTH_RATE, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, new], 1)


def _transition(width_in: int, width_out: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(width_in), nn.ReLU(inplace=True),
                         nn.Conv2d(width_in, width_out, 1, bias=False), nn.AvgPool2d(2, 2))


class DenseNet201(nn.Module):
    """``stem="imagenet"``: 7x7 stride-2 convolution and a max-pool; ``"small"``: one 3x3 stride-1 convolution."""

    def __init__(self, n_classes: int, in_channels: int = 3, stem: str = "imagenet"):
        super().__init__()
        n_classes, in_channels = positive_int("n_classes", n_classes), positive_int("in_channels", in_channels)
        self.spec = {"name": "densenet201", "n_classes": n_classes, "in_channels": in_channels,
                     "stem": check_stem(stem)}
        features = nn.Sequential()
        if stem == "imagenet":
            features.add_module("conv0", nn.Conv2d(in_channels, INITIAL_WIDTH, 7, 2, 3, bias=False))
        else:
            features.add_module("conv0", nn.Conv2d(in_channels, INITIAL_WIDTH, 3, 1, 1, bias=False))
        features.add_module("norm0", nn.BatchNorm2d(INITIAL_WIDTH))
        features.add_module("relu0", nn.ReLU(inplace=True))
        if stem == "imagenet":
            features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        width = INITIAL_WIDTH
        for index, n_layers in enumerate(BLOCKS, 1):
            block = nn.Sequential()
            for layer in range(n_layers):
                block.add_module(f"denselayer{layer + 1}", DenseLayer(width + layer * GROWTH_RATE))
            features.add_module(f"denseblock{index}", block)
            width += n_layers * GROWTH_RATE
            if index < len(BLOCKS):  # compression 0.5 between blocks
                features.add_module(f"transition{index}", _transition(width, width // 2))
                width //= 2
        features.add_module("norm5", nn.BatchNorm2d(width))
        self.features = features
        self.classifier = nn.Linear(width, n_classes)
        init_conv_net(self)

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled 1920 features after the last dense block."""
        return F.relu(self.features(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden_activations(x))
