"""What one run trains: each model on the chosen stem, plus the ablation grid (stem x
augmentation) and the transfer ladder (unfrozen blocks), each trained on every fold."""

from __future__ import annotations

from dataclasses import dataclass

from mirflow.pipelines.vocal_genre.params import ABLATION_STEMS, VocalGenreParams


@dataclass(frozen=True)
class Variant:
    """A model trained one way; ``unfreeze`` set: started from the pretrained weights."""

    model: str
    stem: str
    augment: bool
    unfreeze: str | None = None

    def name(self, params: VocalGenreParams) -> str:
        """The model's name alone for the run's main variant, else what differs from it."""
        if self.unfreeze is not None:
            return f"{self.model}-unfreeze-{self.unfreeze}"
        if (self.stem, self.augment) == (params.stem, True):
            return self.model
        return f"{self.model}-{self.stem}-{'aug' if self.augment else 'noaug'}"


def plan_variants(params: VocalGenreParams) -> list[Variant]:
    """Main variants first, then the ablation grid and the transfer ladder (each once)."""
    planned = [Variant(model, params.stem, True) for model in params.models]
    if params.ablation:
        planned += [Variant(model, stem, augment) for stem in ABLATION_STEMS for augment in (True, False)
                    for model in params.models]
    if params.pretrained:
        planned += [Variant(model, params.stem, True, n) for n in params.unfreeze for model in params.models]
    return list(dict.fromkeys(planned))


def augment_settings(params: VocalGenreParams, on: bool) -> dict:
    """The tricks' settings of a variant: the run's own, or none at all."""
    if not on:
        return {"spec_augment": False, "time_mask": 0, "freq_mask": 0, "mixup_alpha": 0.0, "mixup_fraction": 0.0}
    return params.model_dump(include={"spec_augment", "time_mask", "freq_mask", "mixup_alpha", "mixup_fraction"})
