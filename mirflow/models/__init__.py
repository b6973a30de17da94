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
from pathlib import Path

import torch
from torch import nn

from mirflow.core.errors import ConfigError, DataError
from mirflow.models.allcnn import AllCNNC
from mirflow.models.cnn import SpectrogramCNN
from mirflow.models.embedding import EmbeddingNet
from mirflow.models.densenet import DenseNet201
from mirflow.models.mlp import MLP
from mirflow.models.mobilenet import MobileNetV2
from mirflow.models.resnet import CifarResNet20, ResNet18, ResNet50, ResNeXt50

__all__ = ["MLP", "MODELS", "EmbeddingNet", "SpectrogramCNN", "IMAGE_MODELS", "build_model", "count_parameters",
           "load_pretrained", "load_state", "read_state_dict"]

# The image zoo: every one takes (n_classes, in_channels) and, where it has one, a stem.
IMAGE_MODELS: dict[str, type[nn.Module]] = {
    "allcnn_c": AllCNNC,
    "resnet20": CifarResNet20,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "mobilenet_v2": MobileNetV2,
    "resnext50_32x4d": ResNeXt50,
    "densenet201": DenseNet201,
}
MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SpectrogramCNN, "embedding": EmbeddingNet, **IMAGE_MODELS}


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


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load a local state dict (a plain one, e.g. torchvision's, or a mirflow model file) into ``model``.

    Loaded with ``weights_only=True`` (no code runs).  Tensors whose shape differs from the
    model's (the output layer of a model trained for other classes or channels) keep their
    fresh initialisation; their names are returned.  Any other missing or extra name is an error.
    """
    state, _ = read_state_dict(path)
    return load_state(model, state, path)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, model spec or None) of a local weights file: a plain state dict or a mirflow model file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "pretrained weights file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for corrupt or foreign files
        raise DataError(path, f"not a readable state dict: {error}") from None
    spec = None
    if isinstance(state, dict) and {"spec", "state_dict"} <= set(state):  # a mirflow model file
        spec, state = state["spec"], state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "not a state dict (expected a mapping of names to tensors)")
    return state, spec


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> list[str]:
    """``load_pretrained`` of a state dict already read (``source`` names it in errors)."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise DataError(source, f"does not fit {type(model).__name__}: missing {missing[:3]}, "
                                f"unexpected {extra[:3]} ({len(missing)} and {len(extra)} names)")
    reshaped = sorted(name for name in own if own[name].shape != state[name].shape)
    model.load_state_dict({name: state[name] for name in own if name not in reshaped}, strict=False)
    return reshaped
