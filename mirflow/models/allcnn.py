"""All-CNN-C (Springenberg et al. 2014, "Striving for simplicity"): convolutions only, strided
convolutions instead of max-pooling, 1x1 convolutions and global averaging instead of dense layers."""

from __future__ import annotations

import torch
from torch import nn

from mirflow.models.layers import check_dropout, init_conv_net, positive_int


def _conv_relu(width_in: int, width_out: int, kernel_size: int, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(width_in, width_out, kernel_size, stride, padding), nn.ReLU(inplace=True)]


class AllCNNC(nn.Module):
    """Table 2, model C, for inputs of at least 9x9 (32x32 in the paper).

    The paper's last layer is a 1x1 convolution to ``n_classes`` maps followed by global
    averaging; both are linear, so it is computed as a linear layer on the averaged
    192 maps (same function, same parameters), and those 192 averages are the hidden activations.
    """

    def __init__(self, n_classes: int, in_channels: int = 3, dropout: float = 0.5, input_dropout: float = 0.2):
        super().__init__()
        n_classes, in_channels = positive_int("n_classes", n_classes), positive_int("in_channels", in_channels)
        self.spec = {"name": "allcnn_c", "n_classes": n_classes, "in_channels": in_channels,
                     "dropout": check_dropout(dropout), "input_dropout": check_dropout(input_dropout)}
        self.features = nn.Sequential(
            nn.Dropout(input_dropout),
            *_conv_relu(in_channels, 96, 3), *_conv_relu(96, 96, 3), *_conv_relu(96, 96, 3, stride=2),
            nn.Dropout(dropout),
            *_conv_relu(96, 192, 3), *_conv_relu(192, 192, 3), *_conv_relu(192, 192, 3, stride=2),
            nn.Dropout(dropout),
            *_conv_relu(192, 192, 3, padding=0), *_conv_relu(192, 192, 1, padding=0),
        )
        self.classifier = nn.Linear(192, n_classes)
        init_conv_net(self)

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden_activations(x))
