"""Transfer learning (report 001) without downloads: start a zoo model from a finished
run's checkpoint or a local state dict, then train only its last N blocks and its head."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mirflow.core.errors import ConfigError
from mirflow.models import load_state, read_state_dict

_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def blocks(model: nn.Module) -> list[list[nn.Module]]:
    """The model's blocks below its head (its last child), input first: the children, a
    Sequential's own children each, a normalisation layer with the layer before it."""
    *body, _head = model.children()
    units = [unit for child in body for unit in (child.children() if isinstance(child, nn.Sequential) else [child])]
    found: list[list[nn.Module]] = []
    for unit in units:
        if next(unit.parameters(), None) is None:
            continue
        if found and isinstance(unit, _NORMS):
            found[-1].append(unit)
        else:
            found.append([unit])
    return found


def freeze_all_but(model: nn.Module, unfreeze: str) -> int:
    """Freeze every parameter but those of the last ``unfreeze`` blocks ("all": none frozen)
    and of the head; the number of trainable parameters."""
    model.requires_grad_(unfreeze == "all")
    if unfreeze != "all":
        found = blocks(model)
        last = found[len(found) - min(int(unfreeze), len(found)):] if int(unfreeze) else []
        for module in [*(m for block in last for m in block), list(model.children())[-1]]:
            module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_transfer(model: nn.Module, path: str | Path) -> list[str]:
    """Load ``path`` into ``model``; what was adapted, as report lines. A checkpoint of
    another input stem is refused; 3-channel first-layer weights meeting a 1-channel
    model are averaged over the channels; mismatched heads are replaced."""
    state, spec = read_state_dict(path)
    ours = getattr(model, "spec", {})
    if spec is not None and spec.get("stem") != ours.get("stem"):
        raise ConfigError(f"pretrained {path}: its model has stem {spec.get('stem')!r}, this one {ours.get('stem')!r}; "
                          "train both with the same stem")
    notes, own = [], model.state_dict()
    for name, tensor in state.items():
        target = own.get(name)
        if target is not None and tensor.ndim == 4 and tensor.shape[1] == 3 and target.shape[1] == 1 \
                and tensor.shape[0] == target.shape[0] and tensor.shape[2:] == target.shape[2:]:
            state = {**state, name: tensor.mean(dim=1, keepdim=True)}
            notes.append(f"{name}: 3 input channels averaged into 1")
    replaced = load_state(model, state, path)
    if replaced:
        notes.append(f"replaced (shape differs, freshly initialised): {', '.join(replaced)}")
    return notes

