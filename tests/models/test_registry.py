"""Model shapes, parameter counts against hand formulas, and the spec registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mirflow.core.errors import ConfigError
from mirflow.models import MLP, SpectrogramCNN, build_model, count_parameters


def test_gtzan_mlp_shapes_and_parameter_count():
    model = MLP(57, 10)
    x = torch.randn(7, 57)
    assert model(x).shape == (7, 10)
    assert model.hidden_activations(x).shape == (7, 50)
    expected = (57 * 90 + 90) + (90 * 70 + 70) + (70 * 50 + 50) + (50 * 10 + 10)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("n_genres", [8, 31])
def test_acousticbrainz_mlp_parameter_count(n_genres):
    model = MLP(2669, n_genres, hidden=(256,), dropout=0.5)
    assert count_parameters(model) == 2669 * 256 + 256 + 256 * n_genres + n_genres
    x = torch.randn(3, 2669)
    assert model(x).shape == (3, n_genres)
    assert model.hidden_activations(x).shape == (3, 256)


def test_mlp_without_hidden_layers_is_linear():
    model = MLP(12, 4, hidden=())
    x = torch.randn(5, 12)
    assert count_parameters(model) == 12 * 4 + 4
    assert torch.equal(model.hidden_activations(x), x)


def test_hidden_activations_feed_the_output_layer():
    model = MLP(6, 3, hidden=(5, 4)).eval()
    x = torch.randn(4, 6)
    assert torch.equal(model.head(model.hidden_activations(x)), model(x))
    assert (model.hidden_activations(x) >= 0).all()  # after the ReLU


@pytest.mark.parametrize("n_frames", [16, 33, 130])
def test_cnn_accepts_any_frame_count_above_minimum(n_frames):
    model = SpectrogramCNN(n_classes=10).eval()
    x = torch.randn(2, 1, 128, n_frames)
    assert model(x).shape == (2, 10)
    assert model.hidden_activations(x).shape == (2, 128)
    assert torch.equal(model(x[:, 0]), model(x))  # (batch, mels, frames) is accepted too


def test_cnn_rejects_bad_input_shapes():
    model = SpectrogramCNN(n_classes=3, n_mels=32, channels=(4, 8))
    assert model.min_frames == 4
    with pytest.raises(ConfigError, match="needs >= 4"):
        model(torch.randn(2, 1, 32, 3))
    with pytest.raises(ConfigError, match="32"):
        model(torch.randn(2, 1, 64, 10))
    with pytest.raises(ConfigError, match="n_frames"):
        SpectrogramCNN(n_classes=3, n_frames=8)  # four pooling blocks need 16 frames


def test_cnn_parameter_count():
    model = SpectrogramCNN(n_classes=3, n_mels=16, channels=(4, 8))
    conv = (1 * 4 * 9 + 4) + (4 * 8 * 9 + 8)
    batchnorm = 2 * 4 + 2 * 8  # weight and bias; running statistics are buffers
    assert count_parameters(model) == conv + batchnorm + (8 * 3 + 3)


def test_cnn_on_colour_images():
    model = SpectrogramCNN(n_classes=100, n_mels=32, in_channels=3, channels=(8, 16, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("model", [MLP(9, 2, hidden=(4,)), SpectrogramCNN(5, n_mels=16, channels=(4, 8))])
def test_spec_rebuilds_the_architecture(model):
    spec = json.loads(json.dumps(model.spec))  # tuples become lists in JSON
    rebuilt = build_model(spec)
    assert type(rebuilt) is type(model)
    assert rebuilt.spec == model.spec
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == shapes


def test_build_model_seed_is_reproducible_and_leaves_global_rng_alone():
    spec = {"name": "mlp", "n_in": 8, "n_out": 3, "hidden": [6]}
    before = torch.random.get_rng_state()
    first, second = build_model(spec, seed=3), build_model(spec, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    other = build_model(spec, seed=4)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert not torch.equal(first.state_dict()["body.0.weight"], other.state_dict()["body.0.weight"])


def test_numpy_integers_give_a_json_spec():
    model = build_model({"name": "mlp", "n_in": np.int64(5), "n_out": np.int32(2)})
    assert json.loads(json.dumps(model.spec))["n_in"] == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"n_in": 3, "n_out": 2}, "'name'"),
        ({"name": "transformer"}, "transformer"),
        ({"name": "mlp", "n_in": 3, "n_out": 2, "width": 4}, "width"),
        ({"name": "mlp", "n_in": 3}, "n_out"),
        ({"name": "mlp", "n_in": 3, "n_out": 2, "dropout": 1.5}, "dropout"),
        ({"name": "mlp", "n_in": 3, "n_out": 2, "activation": "swish"}, "swish"),
        ({"name": "mlp", "n_in": 0, "n_out": 2}, "n_in"),
        ({"name": "cnn", "n_classes": 2, "kernel_size": 4}, "kernel_size"),
        ({"name": "cnn", "n_classes": 2, "channels": []}, "channels"),
    ],
)
def test_build_model_rejects_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec)
