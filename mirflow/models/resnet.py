"""Residual networks: ResNet-18/50 and ResNeXt-50 (32x4d) (He et al. 2016, Xie et al. 2017) and
the CIFAR ResNet-20 of He et al. 2016, section 4.2.

Layer names follow torchvision's, so a torchvision state dict loads with `load_pretrained`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mirflow.models.layers import check_stem, init_conv_net, positive_int


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (``downsample`` when the shape changes)."""

    expansion = 1

    def __init__(self, width_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, stride here as torchvision's "v1.5"), 1x1 expand x4."""

    expansion = 4

    def __init__(self, width_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = nn.Conv2d(width_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class ResNet(nn.Module):
    """ImageNet-style residual network; subclasses fix the depth and the block.

    ``stem="imagenet"``: 7x7 stride-2 convolution and a 3x3 stride-2 max-pool (224x224 inputs);
    ``stem="small"``: one 3x3 stride-1 convolution, no pooling (32x32 images, 128x128 spectrograms).
    """

    name: str
    block: type[BasicBlock] | type[Bottleneck]
    blocks_per_stage: tuple[int, int, int, int]
    groups, base_width = 1, 64

    def __init__(self, n_classes: int, in_channels: int = 3, stem: str = "imagenet"):
        super().__init__()
        n_classes, in_channels = positive_int("n_classes", n_classes), positive_int("in_channels", in_channels)
        self.spec = {"name": self.name, "n_classes": n_classes, "in_channels": in_channels,
                     "stem": check_stem(stem)}
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self._width = 64
        for stage, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), self.blocks_per_stage), 1):
            setattr(self, f"layer{stage}", self._stage(planes, n_blocks, stride=1 if stage == 1 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self._width, n_classes)
        init_conv_net(self)

    def _stage(self, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
        width_out = planes * self.block.expansion
        downsample = None
        if stride != 1 or self._width != width_out:
            downsample = nn.Sequential(nn.Conv2d(self._width, width_out, 1, stride, bias=False),
                                       nn.BatchNorm2d(width_out))
        blocks = [self.block(self._width, planes, stride, downsample, self.groups, self.base_width)]
        self._width = width_out
        blocks += [self.block(width_out, planes, 1, None, self.groups, self.base_width)
                   for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled output of the last stage: (batch, 512 x expansion)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden_activations(x))


class ResNet18(ResNet):
    name, block, blocks_per_stage = "resnet18", BasicBlock, (2, 2, 2, 2)


class ResNet50(ResNet):
    name, block, blocks_per_stage = "resnet50", Bottleneck, (3, 4, 6, 3)


class ResNeXt50(ResNet):
    name, block, blocks_per_stage = "resnext50_32x4d", Bottleneck, (3, 4, 6, 3)
    groups, base_width = 32, 4


class _PadShortcut(nn.Module):
    """The CIFAR ResNets' parameter-free shortcut ("option A"): subsample, zero-pad the new channels."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra_channels // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra_channels - half))


class CifarResNet20(nn.Module):
    """ResNet-20 for 32x32 inputs: a 3x3 16-channel stem and three stages of three basic blocks
    (16, 32, 64 channels; stride 2 into stages 2 and 3), global pooling, one linear layer."""

    def __init__(self, n_classes: int, in_channels: int = 3):
        super().__init__()
        n_classes, in_channels = positive_int("n_classes", n_classes), positive_int("in_channels", in_channels)
        self.spec = {"name": "resnet20", "n_classes": n_classes, "in_channels": in_channels}
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        stages, width_in = [], 16
        for width in (16, 32, 64):
            stride = 1 if width == width_in else 2
            shortcut = None if stride == 1 else _PadShortcut(width - width_in)
            stages.append(nn.Sequential(BasicBlock(width_in, width, stride, shortcut),
                                        BasicBlock(width, width), BasicBlock(width, width)))
            width_in = width
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, n_classes)
        init_conv_net(self)

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled output of the last stage: (batch, 64)."""
        x = self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden_activations(x))
