"""Report 004's training tricks as one picklable batch augmentation: SpecAugment masks on
every batch, mixup only in the first epochs (then plain cross-entropy on true labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mirflow.stages.training import BatchAugment


def mixup_epochs(max_epochs: int, fraction: float) -> int:
    """Epochs (from the first) trained with mixup: ``fraction`` of them, rounded."""
    return int(round(max_epochs * fraction))


@dataclass
class SliceAugment:
    """``TrainConfig.augment`` with a schedule: ``train_model`` calls ``set_epoch`` before each epoch."""

    time_mask: int
    freq_mask: int
    mixup_alpha: float
    mixup_epochs: int
    n_classes: int
    epoch: int = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: np.random.Generator):
        alpha = self.mixup_alpha if self.epoch <= self.mixup_epochs else 0.0
        return BatchAugment(self.time_mask, self.freq_mask, alpha, self.n_classes)(x, y, generator)


def slice_augment(settings: dict, max_epochs: int, n_classes: int) -> SliceAugment | None:
    """The augmentation ``settings`` (spec_augment, time_mask, freq_mask, mixup_alpha,
    mixup_fraction) ask for; None when they ask for none."""
    masks = (settings["time_mask"], settings["freq_mask"]) if settings["spec_augment"] else (0, 0)
    epochs = mixup_epochs(max_epochs, settings["mixup_fraction"]) if settings["mixup_alpha"] > 0 else 0
    if not any(masks) and not epochs:
        return None
    return SliceAugment(*masks, settings["mixup_alpha"], epochs, n_classes)
