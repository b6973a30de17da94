"""The training loop on tiny synthetic problems: learning, determinism, early stopping,
checkpoints, every task, batch sources and the augmentations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mirflow.core.errors import ConfigError, DataError
from mirflow.models import MLP, build_model
from mirflow.stages.training import (
    ArrayBatchSource,
    BatchAugment,
    TrainConfig,
    evaluate,
    extract_hidden,
    load_model,
    mixup,
    predict,
    resolve_device,
    save_model,
    spec_augment,
    train_model,
)

CPU = {"device": "cpu", "num_threads": 1}


def blobs(n_per_class=60, n_features=8, seed=0):
    """Three well separated Gaussian blobs, shuffled; returns (train, validation) sources."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(3.0 * c, 1.0, size=(n_per_class, n_features)) for c in range(3)])
    y = np.repeat(np.arange(3), n_per_class)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    cut = len(y) * 2 // 3
    train = ArrayBatchSource(X[:cut], y[:cut], 16, shuffle=True, seed=seed)
    return train, ArrayBatchSource(X[cut:], y[cut:], 32)


def mlp(n_in=8, n_out=3, seed=0, **kwargs):
    return build_model({"name": "mlp", "n_in": n_in, "n_out": n_out, "hidden": [16, 8], **kwargs}, seed=seed)


def test_mlp_learns_separable_blobs():
    train, validation = blobs()
    model = mlp()
    result = train_model(model, train, validation, TrainConfig(max_epochs=30, lr=1e-2, **CPU))
    probabilities = predict(model, validation, "multiclass")
    labels = np.concatenate([y for _, y in validation])
    assert probabilities.shape == (len(validation), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.9
    assert result.metric_name == "accuracy"
    assert result.history[result.best_epoch - 1]["val_metric"] > 0.9
    assert result.n_parameters == sum(p.numel() for p in model.parameters())
    assert result.peak_memory_bytes > 0 and result.peak_cuda_memory_bytes is None


def test_same_seed_gives_identical_weights_and_history():
    def run(seed):
        train, validation = blobs()
        model = mlp(dropout=0.3)
        result = train_model(model, train, validation, TrainConfig(max_epochs=5, seed=seed, **CPU))
        return model.state_dict(), result.history

    (weights_a, history_a), (weights_b, history_b) = run(0), run(0)
    weights_c, history_c = run(1)  # same initial weights and batch order: differs only by dropout masks
    assert history_a == history_b
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)
    assert history_a != history_c
    assert not all(torch.equal(weights_a[key], weights_c[key]) for key in weights_a)


def test_training_restores_global_torch_state():
    train, validation = blobs()
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    train_model(mlp(), train, validation, TrainConfig(max_epochs=2, device="cpu", num_threads=threads + 1, seed=5))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.utils.deterministic.fill_uninitialized_memory is True  # torch's default, restored


def test_training_does_not_fill_new_tensors_with_nan():
    """Deterministic mode's NaN fill of every new tensor is a memset per activation and
    gradient (about a tenth of a CPU step); equal results do not need it."""
    seen = []

    def record(x, y, generator):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory))
        return x, y

    train, validation = blobs()
    train_model(mlp(), train, validation, TrainConfig(max_epochs=1, augment=record, **CPU))
    assert set(seen) == {(True, False)}


def test_early_stopping_restores_the_best_epoch():
    # Random labels: the network memorises the training rows and validation loss rises.
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(120, 20)), rng.integers(0, 3, 120)
    train = ArrayBatchSource(X[:80], y[:80], 16, shuffle=True)
    validation = ArrayBatchSource(X[80:], y[80:], 40)
    model = build_model({"name": "mlp", "n_in": 20, "n_out": 3, "hidden": [64], "dropout": 0.0}, seed=0)
    config = TrainConfig(max_epochs=200, patience=3, lr=1e-2, **CPU)
    result = train_model(model, train, validation, config)
    assert result.epochs_run < config.max_epochs
    assert result.epochs_run == result.best_epoch + config.patience
    val_losses = [record["val_loss"] for record in result.history]
    assert result.best_val_loss == min(val_losses) == val_losses[result.best_epoch - 1]
    restored = evaluate(model, validation, "multiclass")["loss"]
    assert restored == pytest.approx(result.best_val_loss, rel=1e-6)
    assert restored != pytest.approx(val_losses[-1], rel=1e-3)  # the last epoch's weights were replaced


def test_min_delta_counts_only_large_enough_improvements():
    # Separable blobs: validation loss keeps falling, but never by 10 per epoch.
    train, validation = blobs()
    config = TrainConfig(max_epochs=50, patience=3, lr=1e-2, min_delta=10.0, **CPU)
    result = train_model(mlp(), train, validation, config)
    assert result.best_epoch == 1 and result.epochs_run == 1 + config.patience
    assert min(r["val_loss"] for r in result.history) < result.best_val_loss  # smaller improvements did happen


def test_a_diverging_learning_rate_raises_training_diverged():
    from mirflow.stages.training import TrainingDiverged

    train, validation = blobs()
    with pytest.raises(TrainingDiverged, match="diverged"):
        train_model(mlp(), train, validation, TrainConfig(max_epochs=20, lr=1e30, **CPU))


def test_plateau_schedule_halves_the_learning_rate():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 2, 60)
    source = ArrayBatchSource(X, y, 20)
    config = TrainConfig(max_epochs=30, patience=30, lr=1e-2, plateau_patience=1, **CPU)
    result = train_model(mlp(n_in=5, n_out=2), source, ArrayBatchSource(X[:20], 1 - y[:20], 20), config)
    learning_rates = [record["lr"] for record in result.history]
    assert learning_rates[0] == 1e-2
    assert min(learning_rates) <= 2.5e-3
    steps = zip(learning_rates, learning_rates[1:])
    assert all(later in (earlier, earlier * 0.5) for earlier, later in steps)


def test_step_schedule_multiplies_the_learning_rate_every_few_epochs():
    """Report 000's recipe: SGD, lr x 0.8 every 5 epochs."""
    train, validation = blobs(n_per_class=10)
    config = TrainConfig(max_epochs=11, patience=11, lr=1e-2, optimizer="sgd", scheduler="step",
                         plateau_factor=0.8, step_epochs=5, **CPU)
    learning_rates = [record["lr"] for record in train_model(mlp(), train, validation, config).history]
    assert learning_rates == pytest.approx([1e-2] * 5 + [8e-3] * 5 + [6.4e-3])


def test_checkpoint_is_written_atomically_and_loads(tmp_path):
    train, validation = blobs()
    model, seen = mlp(), []
    checkpoint = tmp_path / "run" / "best.pt"
    result = train_model(model, train, validation, TrainConfig(max_epochs=4, **CPU),
                         checkpoint_path=checkpoint, on_epoch=seen.append)
    assert seen == result.history
    assert [path.name for path in checkpoint.parent.iterdir()] == ["best.pt"]  # no temporary files left
    loaded, inputs = load_model(checkpoint)
    assert loaded.spec == model.spec and inputs == {}
    expected = predict(model, validation, "multiclass")
    np.testing.assert_array_equal(predict(loaded, validation, "multiclass"), expected)


def test_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    model, path = mlp(), tmp_path / "model.pt"
    save_model(model, path)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(mlp(seed=9), path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    loaded, _ = load_model(path)
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())


def test_model_file_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="garbage.pt"):
        load_model(garbage)
    with pytest.raises(ConfigError, match="JSON"):
        save_model(mlp(), tmp_path / "x.pt", {"columns": object()})


def test_model_file_rebuilds_from_its_own_spec_after_a_default_changes(tmp_path, monkeypatch):
    """Every constructor argument is in the file: a later default cannot change what is
    rebuilt (here the activation, which leaves the weights' shapes as they were)."""
    from mirflow.models.mlp import MLP as MLPClass

    model, path = build_model({"name": "mlp", "n_in": 8, "n_out": 3}, seed=0), tmp_path / "model.pt"
    save_model(model, path, {"sample_rate": 22050})
    defaults = dict(zip(["hidden", "dropout", "activation"], MLPClass.__init__.__defaults__))
    monkeypatch.setattr(MLPClass.__init__, "__defaults__", (defaults["hidden"], defaults["dropout"], "tanh"))
    loaded, inputs = load_model(path)
    assert loaded.spec["activation"] == "relu" and inputs == {"sample_rate": 22050}
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x))


@pytest.mark.parametrize(
    "payload, message",
    [
        (lambda m: {"spec": m.spec, "state_dict": m.state_dict()}, "older mirflow"),
        (lambda m: {"spec": {"name": "mlp", "n_in": 8, "n_out": 3}, "inputs": {},
                    "state_dict": build_model({"name": "mlp", "n_in": 8, "n_out": 3}).state_dict()},
         r"builds this spec differently \(fields \['activation', 'dropout', 'hidden'\]\)"),
        (lambda m: {"spec": {**m.spec, "hidden": [4]}, "inputs": {}, "state_dict": m.state_dict()}, "cannot rebuild"),
        (lambda m: {"spec": {**m.spec, "width": 3}, "inputs": {}, "state_dict": m.state_dict()}, "cannot rebuild"),
    ],
    ids=["old-format", "partial-spec", "weights-do-not-fit", "unknown-argument"],
)
def test_model_file_that_cannot_be_rebuilt_exactly_is_refused_naming_the_fix(tmp_path, payload, message):
    path = tmp_path / "old.pt"
    torch.save(payload(mlp()), path)
    with pytest.raises(DataError, match=message) as refused:
        load_model(path)
    assert str(refused.value).startswith(str(path)) and "\n" not in str(refused.value)
    assert str(refused.value).endswith("re-run the flow that trained it to write a model file this version can rebuild")


def test_multilabel_task_learns_and_gives_hidden_features():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 10))
    Y = (X[:, :4] > 0).astype(np.float32)  # four independent labels
    train = ArrayBatchSource(X[:200], Y[:200], 32, shuffle=True)
    validation = ArrayBatchSource(X[200:], Y[200:], 50)
    model = MLP(10, 4, hidden=(32,), dropout=0.0)
    config = TrainConfig(task="multilabel", max_epochs=40, lr=1e-2, **CPU)
    result = train_model(model, train, validation, config)
    assert result.metric_name == "micro_f1"
    assert result.history[result.best_epoch - 1]["val_metric"] > 0.85
    probabilities = predict(model, validation, "multilabel")
    assert probabilities.shape == (100, 4) and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert extract_hidden(model, validation).shape == (100, 32)


def test_regression_and_binary_tasks_give_one_value_per_row():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 6))
    target = X @ np.array([1.0, -2.0, 0.5, 0.0, 0.0, 1.5])
    source = ArrayBatchSource(X, target, 25, shuffle=True)
    model = MLP(6, 1, hidden=(16,), dropout=0.0)
    config = TrainConfig(task="regression", max_epochs=30, lr=1e-2, **CPU)
    result = train_model(model, source, ArrayBatchSource(X, target, 50), config)
    assert result.metric_name == "rmse"
    assert result.history[-1]["val_metric"] < 0.5 * result.history[0]["val_metric"]
    assert predict(model, source, "regression").shape == (200,)

    labels = (target > 0).astype(np.int64)
    binary = MLP(6, 1, hidden=(16,), dropout=0.0)
    config = TrainConfig(task="binary", max_epochs=20, lr=1e-2, **CPU)
    result = train_model(binary, ArrayBatchSource(X, labels, 25, shuffle=True), ArrayBatchSource(X, labels, 50),
                         config)
    assert result.history[result.best_epoch - 1]["val_metric"] > 0.9
    assert predict(binary, source, "binary").shape == (200,)


class IdsAndFeatures(nn.Module):
    """A KKBOX-shaped two-input model: an embedding for ids plus dense features."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.out = nn.Linear(4 + 3, 1)

    def forward(self, ids, dense):
        return self.out(torch.cat([self.embedding(ids), dense], dim=1))


def test_multi_input_batches_reach_the_model(tmp_path):
    rng = np.random.default_rng(5)
    ids, dense = rng.integers(0, 10, 200), rng.normal(size=(200, 3)).astype(np.float32)
    labels = (ids >= 5).astype(np.float32)  # only the ids carry the signal
    train = ArrayBatchSource((ids, dense), labels, 20, shuffle=True)
    model = IdsAndFeatures()
    result = train_model(model, train, ArrayBatchSource((ids, dense), labels, 50),
                         TrainConfig(task="binary", max_epochs=40, lr=5e-2, **CPU))
    assert result.history[result.best_epoch - 1]["val_metric"] > 0.95
    with pytest.raises(ConfigError, match="spec"):
        config = TrainConfig(task="binary", max_epochs=1, **CPU)
        train_model(model, train, train, config, checkpoint_path=tmp_path / "x.pt")


def test_array_batch_source_covers_every_row_once_per_epoch():
    X, y = np.arange(10).reshape(10, 1), np.arange(10)
    in_order = ArrayBatchSource(X, y, batch_size=4)
    assert [len(batch_y) for _, batch_y in in_order] == [4, 4, 2]
    assert np.concatenate([batch_y for _, batch_y in in_order]).tolist() == list(range(10))

    def order(source, epoch):
        source.set_epoch(epoch)
        return np.concatenate([batch_x[:, 0] for batch_x, _ in source]).tolist()

    shuffled = ArrayBatchSource(X, y, batch_size=4, shuffle=True, seed=7)
    assert sorted(order(shuffled, 1)) == list(range(10))
    assert order(shuffled, 1) == order(ArrayBatchSource(X, y, 3, shuffle=True, seed=7), 1)
    assert order(shuffled, 1) != order(shuffled, 2)
    with pytest.raises(ConfigError, match="same number of rows"):
        ArrayBatchSource(X, y[:9])


def test_source_whose_length_lies_is_rejected():
    class Lying(ArrayBatchSource):
        def __len__(self):
            return 99

    with pytest.raises(ConfigError, match="99"):
        predict(mlp(n_in=1), Lying(np.zeros((5, 1)), None, 2), "multiclass")


def test_mixup_blends_inputs_and_targets_with_the_same_weight():
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    x = nn.functional.one_hot(labels, 3).float()
    mixed_x, mixed_y = mixup(x, labels, 0.4, np.random.default_rng(0), n_classes=3)
    assert mixed_y.shape == (6, 3)
    assert torch.allclose(mixed_x, mixed_y)  # x is the one-hot label itself
    again_x, _ = mixup(x, labels, 0.4, np.random.default_rng(0), n_classes=3)
    other_x, _ = mixup(x, labels, 0.4, np.random.default_rng(1), n_classes=3)
    assert torch.equal(mixed_x, again_x) and not torch.equal(mixed_x, other_x)
    with pytest.raises(ConfigError, match="n_classes"):
        mixup(x, labels, 0.4, np.random.default_rng(0))


def test_spec_augment_masks_one_band_per_example_deterministically():
    x = torch.randn(4, 1, 20, 50)
    masked = spec_augment(x, time_mask=8, freq_mask=0, generator=np.random.default_rng(0))
    assert masked.shape == x.shape
    assert torch.equal(masked, spec_augment(x, 8, 0, np.random.default_rng(0)))
    assert not torch.equal(masked, spec_augment(x, 8, 0, np.random.default_rng(1)))
    for example, original in zip(masked[:, 0], x[:, 0]):
        changed = np.flatnonzero((example != original).any(dim=0).numpy())
        assert len(changed) <= 8
        if len(changed):
            assert changed.tolist() == list(range(changed[0], changed[-1] + 1))  # one contiguous band
            assert torch.allclose(example[:, changed], original.mean().expand(20, len(changed)))
    assert torch.equal(spec_augment(x, 0, 0, np.random.default_rng(0)), x)


def test_cnn_trains_with_spec_augment_and_mixup():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(32, 1, 16, 24)).astype(np.float32), rng.integers(0, 4, 32)
    model = build_model({"name": "cnn", "n_classes": 4, "n_mels": 16, "channels": [4, 8]}, seed=0)
    augment = BatchAugment(time_mask=4, freq_mask=2, mixup_alpha=0.4, n_classes=4)
    config = TrainConfig(max_epochs=2, augment=augment, **CPU)
    result = train_model(model, ArrayBatchSource(X, y, 8, shuffle=True), ArrayBatchSource(X, y, 16), config)
    assert result.epochs_run == 2
    assert json.loads(json.dumps(config.as_dict()))["augment"].startswith("BatchAugment(")


def test_bad_configuration_is_rejected():
    with pytest.raises(ConfigError, match="task"):
        TrainConfig(task="ranking")
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
