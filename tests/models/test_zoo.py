"""The image zoo: published parameter counts, both stems, a training step, checkpoint rebuilds,
and local pretrained weights."""

from __future__ import annotations

import pickle

import pytest
import torch

from mirflow.core.errors import ConfigError, DataError
from mirflow.models import IMAGE_MODELS, build_model, count_parameters, load_pretrained
from mirflow.stages.training import load_model_bytes, model_bytes, save_model

STEMMED = ("resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2", "densenet201")
LIGHT = ("allcnn_c", "resnet20", "mobilenet_v2")  # the rest: forward only, the test budget
# every model and stem; the small stem with one input channel (spectrograms), the ImageNet one with three
VARIANTS = [(name, stem, 1 if stem == "small" else 3) for name in IMAGE_MODELS
            for stem in (("imagenet", "small") if name in STEMMED else (None,))]


def _spec(name, stem=None, n_classes=100, in_channels=3):
    spec = {"name": name, "n_classes": n_classes, "in_channels": in_channels}
    return spec if stem is None else {**spec, "stem": stem}


# torchvision's figures for its ImageNet models (1000 classes) and their 100-class heads
# (11.2 M, 23.7 M, 23.2 M, 2.35 M, 18.3 M); ResNet-20 0.27 M (He et al. table 6); All-CNN-C ~1.4 M.
@pytest.mark.parametrize("name, n_classes, expected", [
    ("resnet18", 1000, 11_689_512), ("resnet18", 100, 11_227_812),
    ("resnet50", 1000, 25_557_032), ("resnet50", 100, 23_712_932),
    ("resnext50_32x4d", 1000, 25_028_904), ("resnext50_32x4d", 100, 23_184_804),
    ("mobilenet_v2", 1000, 3_504_872), ("mobilenet_v2", 100, 2_351_972),
    ("densenet201", 1000, 20_013_928), ("densenet201", 100, 18_285_028),
    ("resnet20", 10, 269_722), ("allcnn_c", 10, 1_369_738),
])
def test_parameter_counts_match_published_figures(name, n_classes, expected):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        assert count_parameters(build_model(_spec(name, n_classes=n_classes))) == expected


def test_small_stem_replaces_only_the_first_convolution():
    with torch.device("meta"):
        imagenet, small = (build_model(_spec("resnet18", stem)) for stem in ("imagenet", "small"))
    assert count_parameters(imagenet) - count_parameters(small) == 64 * 3 * (7 * 7 - 3 * 3)
    assert count_parameters(small) == 11_220_132  # the "11.2 M" of report 000's CIFAR ResNet-18


@pytest.mark.parametrize("name, stem, in_channels", VARIANTS)
def test_every_model_trains_a_step_and_is_rebuilt_from_its_checkpoint(name, stem, in_channels):
    model = build_model(_spec(name, stem, n_classes=7, in_channels=in_channels), seed=0)
    side = 16 if stem == "small" else 32  # the smallest the ImageNet stem's five halvings allow
    x, y = torch.randn(2 if name in LIGHT else 1, in_channels, side, side), torch.tensor([1, 6])
    if name in LIGHT:
        before = {key: value.clone() for key, value in model.state_dict().items()}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        loss = torch.nn.functional.cross_entropy(model.train()(x), y)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        assert any(not torch.equal(before[key], value) for key, value in model.state_dict().items()
                   if key.endswith("weight"))
    after = model.state_dict()
    # a model file's bytes, not the file: save_model's atomic write is tested in test_training,
    # and DenseNet-201's 80 MB fsynced each time cost seconds here
    rebuilt, _ = load_model_bytes(model_bytes(model))
    assert rebuilt.spec == model.spec and type(rebuilt) is type(model)
    rebuilt_state = rebuilt.state_dict()  # once: a state_dict() per tensor walked DenseNet's 700 modules 1,200 times
    assert after.keys() == rebuilt_state.keys()
    assert all(torch.equal(value, rebuilt_state[key]) for key, value in after.items())
    with torch.no_grad():
        hidden, output = model.eval().hidden_activations(x), model(x)
        assert output.shape == (len(x), 7) and hidden.ndim == 2
        head = model.fc if hasattr(model, "fc") else model.classifier
        torch.testing.assert_close(head(hidden), output)  # the hidden activations feed the output layer


# Adam's rate per model: at 1e-2 All-CNN-C's ReLUs die (chance on true labels); at 1e-3 MobileNet v2
# stays near chance in 15 steps. All-CNN-C trains without its dropout here: the masks came from the
# global generator, so whether it beat the shuffled labels turned on the tests run before it.
LEARNING = {"allcnn_c": ({"dropout": 0.0, "input_dropout": 0.0}, 1e-3),
            "resnet20": ({}, 1e-2), "mobilenet_v2": ({"stem": "small"}, 1e-2)}


@pytest.mark.parametrize("name", LIGHT)
def test_light_models_learn_a_tiny_batch(name):
    """A few Adam steps on true labels beat the same on shuffled labels, on held-out images
    (on the training batch itself these models memorise shuffled labels as well)."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 4
    x = torch.randn(96, 3, 16, 16, generator=generator) + y[:, None, None, None].float()  # class = brightness
    shuffled = y[:64][torch.randperm(64, generator=generator)]
    options, learning_rate = LEARNING[name]

    def held_out_accuracy(labels):
        model = build_model({**_spec(name, n_classes=4), **options}, seed=0)
        torch.manual_seed(0)  # any dropout masks: the same whatever ran before
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        for _ in range(15):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model.train()(x[:64]), labels).backward()
            optimizer.step()
        # Dropout off, but BatchNorm on batch statistics: 15 steps leave its running ones unsettled.
        model.eval()
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.train()
        with torch.no_grad():
            return (model(x[64:]).argmax(1) == y[64:]).float().mean().item()

    assert held_out_accuracy(y[:64]) > held_out_accuracy(shuffled)


def test_unknown_stem_is_a_config_error():
    with pytest.raises(ConfigError, match="stem='cifar'"):
        build_model(_spec("resnet18", "cifar"))


def test_load_pretrained_keeps_a_fresh_head_for_other_classes(tmp_path):
    source = build_model(_spec("resnet20", n_classes=10), seed=1)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = build_model(_spec("resnet20", n_classes=100), seed=2)
    fresh_head = target.fc.weight.clone()
    assert load_pretrained(target, tmp_path / "weights.pt") == ["fc.bias", "fc.weight"]
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.fc.weight, fresh_head)
    # a mirflow model file works too
    save_model(source, tmp_path / "model.pt")
    assert load_pretrained(build_model(_spec("resnet20", n_classes=10)), tmp_path / "model.pt") == []


def test_load_pretrained_refuses_other_architectures_and_pickled_code(tmp_path):
    torch.save(build_model(_spec("allcnn_c", n_classes=10)).state_dict(), tmp_path / "allcnn.pt")
    with pytest.raises(DataError, match="does not fit CifarResNet20"):
        load_pretrained(build_model(_spec("resnet20", n_classes=10)), tmp_path / "allcnn.pt")
    (tmp_path / "code.pt").write_bytes(pickle.dumps(ConfigError("not weights"), protocol=2))
    with pytest.raises(DataError, match="not a readable state dict"):
        load_pretrained(build_model(_spec("resnet20", n_classes=10)), tmp_path / "code.pt")
