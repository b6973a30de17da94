"""vocal_genre's transfer learning: pretrained weights from a checkpoint or state dict,
3 -> 1 input channels, head replacement, stem check, unfrozen blocks (vocal_genre.transfer)."""

from __future__ import annotations

import pytest
import torch

from mirflow.core.errors import ConfigError
from mirflow.models import build_model
from mirflow.pipelines.vocal_genre.train import model_spec
from mirflow.pipelines.vocal_genre.transfer import blocks, freeze_all_but, load_transfer
from mirflow.stages.training import model_bytes


def _trainable(model) -> set[str]:
    return {name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("layer") else "")
            for name, p in model.named_parameters() if p.requires_grad}


def test_unfreezing_the_last_blocks_from_the_top():
    model = build_model(model_spec("resnet20", 4, 32))
    assert len(blocks(model)) == 10  # the stem (conv1 + bn1) and 3 x 3 residual blocks
    freeze_all_but(model, "0")
    assert _trainable(model) == {"fc"}
    freeze_all_but(model, "2")
    assert _trainable(model) == {"fc", "layer3.1", "layer3.2"}
    assert freeze_all_but(model, "all") == sum(p.numel() for p in model.parameters())


def test_a_three_channel_checkpoint_starts_a_one_channel_model(tmp_path):
    source = build_model({"name": "resnet20", "n_classes": 20, "in_channels": 3}, seed=1)  # as cnn_benchmark trains it
    path = tmp_path / "resnet20.pt"
    path.write_bytes(model_bytes(source))
    model = build_model(model_spec("resnet20", 4, 32), seed=2)
    notes = load_transfer(model, path)
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight.mean(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    assert model.fc.weight.shape == (4, 64)
    assert notes == ["conv1.weight: 3 input channels averaged into 1",
                     "replaced (shape differs, freshly initialised): fc.bias, fc.weight"]


def test_a_checkpoint_with_another_stem_is_refused(tmp_path):
    path = tmp_path / "resnet18.pt"
    path.write_bytes(model_bytes(build_model({"name": "resnet18", "n_classes": 4, "in_channels": 1, "stem": "imagenet"})))
    with pytest.raises(ConfigError, match="stem 'imagenet', this one 'small'"):
        load_transfer(build_model(model_spec("resnet18", 4, 32)), path)
