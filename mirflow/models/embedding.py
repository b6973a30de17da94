"""The embedding network of report 002 (KKBOX re-listen): an embedding per categorical
field, concatenated with the numeric fields, through three linear layers to one score."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mirflow.models.layers import activation_layer, check_dropout, positive_int


class EmbeddingNet(nn.Module):
    """``forward(codes, numbers)``: codes (batch, fields) int64, numbers (batch, n_numeric)
    float; returns (batch, 1) logits (the task's sigmoid turns them into probabilities)."""

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_numeric: int,
        embedding_dim: int = 16,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        cardinalities = [positive_int("cardinality", c) for c in cardinalities]
        embedding_dim = positive_int("embedding_dim", embedding_dim)
        first, second = (positive_int("hidden", h) for h in hidden)
        n_numeric = int(n_numeric)
        self.spec = {
            "name": "embedding", "cardinalities": cardinalities, "n_numeric": n_numeric, "embedding_dim": embedding_dim,
            "hidden": [first, second], "dropout": check_dropout(dropout), "activation": activation,
        }
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim) for c in cardinalities)
        width = embedding_dim * len(cardinalities) + n_numeric
        self.body = nn.Sequential(
            nn.Linear(width, first), activation_layer(activation), nn.Dropout(dropout),
            nn.Linear(first, second), activation_layer(activation),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(second, 1))

    def hidden_activations(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        embedded = [table(codes[:, i]) for i, table in enumerate(self.embeddings)]
        return self.body(torch.cat([*embedded, numbers], dim=1))

    def forward(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_activations(codes, numbers))
