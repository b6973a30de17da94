"""vocal_genre's training tricks: SpecAugment masks per batch, mixup in the first epochs
only, cosine annealing with warm restarts (mirflow.pipelines.vocal_genre.tricks, stages.training)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mirflow.pipelines.vocal_genre.tricks import SliceAugment, mixup_epochs, slice_augment
from mirflow.stages.training import ArrayBatchSource, TrainConfig, train_model

OFF = {"spec_augment": False, "time_mask": 0, "freq_mask": 0, "mixup_alpha": 0.0, "mixup_fraction": 0.0}


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 32, 32, generator=generator), torch.arange(n) % 3


def test_spec_augment_masks_a_band_of_each_slice_and_keeps_labels():
    x, y = _batch()
    augment = SliceAugment(time_mask=8, freq_mask=8, mixup_alpha=0.0, mixup_epochs=0, n_classes=3)
    masked, labels = augment(x, y, np.random.default_rng(1))
    changed = masked != x
    assert masked.shape == x.shape and torch.equal(labels, y)
    assert changed.any(dim=(1, 2, 3)).sum() >= 6  # nearly every slice (a band may draw width 0)
    assert changed.float().mean() < 0.5  # bands, not the whole slice
    again, _ = augment(x, y, np.random.default_rng(2))
    assert not torch.equal(again, masked)  # new masks for every batch


def test_mixup_only_in_the_first_fraction_of_the_epochs():
    assert mixup_epochs(6, 0.5) == 3 and mixup_epochs(5, 0.0) == 0
    x, y = _batch()
    augment = slice_augment({**OFF, "mixup_alpha": 0.4, "mixup_fraction": 0.5}, max_epochs=4, n_classes=3)
    augment.set_epoch(2)
    mixed_x, soft = augment(x, y, np.random.default_rng(0))
    assert soft.shape == (8, 3) and soft.is_floating_point() and not torch.equal(mixed_x, x)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(8))
    augment.set_epoch(3)  # past the first half: plain cross-entropy on the true labels
    plain_x, labels = augment(x, y, np.random.default_rng(0))
    assert torch.equal(plain_x, x) and torch.equal(labels, y)
    assert slice_augment(OFF, max_epochs=4, n_classes=3) is None


class _Recording(SliceAugment):
    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.seen = [*getattr(self, "seen", []), epoch]


def _train(config: TrainConfig):
    x, y = _batch(24)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3))
    return train_model(model, ArrayBatchSource(x.numpy(), y.numpy(), 8, shuffle=True),
                       ArrayBatchSource(x.numpy(), y.numpy(), 24), config)


def test_training_tells_the_augmentation_each_epoch():
    augment = _Recording(0, 0, 0.4, 2, 3)
    _train(TrainConfig(max_epochs=3, patience=3, augment=augment))
    assert augment.seen == [1, 2, 3]


def test_cosine_annealing_with_warm_restarts():
    history = _train(TrainConfig(lr=0.1, max_epochs=5, patience=5, scheduler="cosine_restarts", restart_epochs=2)).history
    lrs = [h["lr"] for h in history]
    assert lrs[0] == lrs[2] == lrs[4] == 0.1 and lrs[1] == lrs[3] < 0.1  # back to the start every 2 epochs
    plain = [h["lr"] for h in _train(TrainConfig(lr=0.1, max_epochs=5, patience=5, scheduler="cosine")).history]
    assert plain == sorted(plain, reverse=True) and plain[-1] < lrs[-1]  # one cycle over all epochs
