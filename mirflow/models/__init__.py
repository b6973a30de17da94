"""Neural network architectures, chosen by name from a JSON-able spec.

Every model outputs raw scores (logits or values); `mirflow.stages.training` picks the
loss and the output activation from the task.  Every model records its own
constructor arguments in ``.spec`` (``{"name": ..., **kwargs}``) so
``build_model(model.spec)`` rebuilds the architecture and checkpoints can carry it,
and exposes ``hidden_activations(x)``: the representation feeding its output layer
(used for stacking and ensembles).

One module per architecture; this module is the registry that names them.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from mirflow.core.errors import ConfigError
from mirflow.models.cnn import SpectrogramCNN
from mirflow.models.embedding import EmbeddingNet
from mirflow.models.mlp import MLP

__all__ = ["MLP", "MODELS", "EmbeddingNet", "SpectrogramCNN", "build_model", "count_parameters"]

MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SpectrogramCNN, "embedding": EmbeddingNet}


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
