"""The fully connected network (GTZAN tabular features, AcousticBrainz per-source models)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mirflow.models.layers import activation_layer, check_dropout, positive_int

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
        n_in, n_out = positive_int("n_in", n_in), positive_int("n_out", n_out)
        hidden = tuple(positive_int("hidden", size) for size in hidden)
        dropout = check_dropout(dropout)
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
            layers += [nn.Linear(width_in, width_out), activation_layer(activation)]
        self.body = nn.Sequential(*layers)
        # No dropout between the inputs and a hidden-less head: that would drop features.
        self.head = nn.Sequential(nn.Dropout(dropout if hidden else 0.0), nn.Linear(widths[-1], n_out))

    def hidden_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last hidden layer (after its activation, before dropout)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
