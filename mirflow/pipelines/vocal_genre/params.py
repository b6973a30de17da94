"""vocal_genre's flow parameters (reports 004 and 001)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mirflow.core.errors import ConfigError
from mirflow.core.params import RunParams

Stage = Literal["separate", "folds", "train"]
StemName = Literal["vocals", "accompaniment", "harmonic", "percussive", "drums", "bass", "other", "mix"]
ModelName = Literal["resnet20", "cnn", "allcnn_c", "resnet18", "mobilenet_v2", "resnext50_32x4d", "densenet201"]
ABLATION_STEMS = ("vocals", "accompaniment", "mix")


class VocalGenreParams(RunParams):
    """Genre from separated stems: 3-s log-mel slices, song-level k-fold, zoo CNNs with
    SpecAugment, mixup and cosine annealing, ensembles (report 004); transfer (report 001)."""

    force: list[Stage] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
    stem: StemName = Field("vocals", description="What the models see: a REPET-SIM stem (vocals, accompaniment), "
                                                  "an HPSS stem (harmonic, percussive), a Demucs stem (with "
                                                  "demucs_weights: also drums, bass, other) or the unseparated mix.")
    demucs_weights: str | None = Field(None, description="A local Demucs checkpoint (.th file, or a folder with one model "
                                                         "or one bag: htdemucs.yaml and its .th): vocals and accompaniment "
                                                         "come from Demucs instead of REPET-SIM. Needs demucs-infer.")
    resynthesize: bool = Field(False, description="Invert the masked STFT to audio and analyse that again (report 004 "
                                                  "with Spleeter's output); default: log-mel of the masked STFT.")
    folds: int = Field(5, ge=2, le=20, description="Song-level stratified k-fold: each song is tested once, by the "
                                                   "model of the fold that never saw it.")
    validation_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of each fold's training songs held out "
                                                                        "to pick the best epoch.")
    models: list[ModelName] = Field(["resnet20", "cnn"], description="Zoo models (small-input stem); report 004's pair: "
                                                                      "resnext50_32x4d densenet201 (~20 GFLOPs per slice).")
    max_epochs: int = Field(6, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(2e-3, gt=0, le=1.0, description="Adam learning rate (the start of each cosine cycle).")
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "cosine_restarts", "none"] = Field(
        "cosine", description="Cosine annealing over all epochs, or with warm restarts every restart_epochs.")
    restart_epochs: int = Field(2, ge=1, description="Length of each cosine_restarts cycle (epochs).")
    spec_augment: bool = Field(True, description="SpecAugment: one time and one frequency mask per slice and batch.")
    time_mask: int = Field(16, ge=0, description="Widest time mask (frames).")
    freq_mask: int = Field(16, ge=0, description="Widest frequency mask (mel bands).")
    mixup_alpha: float = Field(0.2, ge=0, description="Mixup Beta(alpha, alpha); 0: no mixup.")
    mixup_fraction: float = Field(0.5, ge=0, le=1, description="Mixup in this first fraction of the epochs, then plain "
                                                                "cross-entropy (report 004: the first half).")
    ablation: bool = Field(False, description="Also train stem (vocals, accompaniment, mix) x augmentation on/off; the "
                                              "report's ablation table, single models vs their ensemble.")
    pretrained: str | None = Field(None, description="Start each model from a finished run (folder or id: its "
                                                     "models/<model>.pt) or a local state dict file.")
    unfreeze: list[str] = Field(["0", "1", "2", "all"], description="With pretrained: train with all but the last N "
                                                                  "blocks frozen, for each N (the head always trains).")
    n_mels: int = Field(128, ge=16, le=512, description="Mel bands of a slice (report 004: 128).")
    slice_frames: int = Field(128, ge=16, le=2048, description="Frames of a slice (128 at hop 512: 2.97 s).")
    demo_songs_per_genre: int = Field(12, ge=2, le=1000, description="Songs per genre in the generated demo set.")
    demo_seconds: float = Field(6.5, gt=0, le=600, description="Length of a generated demo song.")

    @field_validator("unfreeze")
    @classmethod
    def _blocks(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v != "all" and not v.isdigit()]
        if bad:
            raise ValueError(f"unfreeze takes block counts (0, 1, 2, ...) or 'all', got {bad}")
        return value

    @model_validator(mode="after")
    def _models_named_once(self):
        if len(set(self.models)) != len(self.models) or not self.models:
            raise ValueError(f"models {self.models} must name at least one model, each once")
        return self

    def check_inputs(self) -> None:
        super().check_inputs()
        if self.data_dir is not None:
            from mirflow.datasets import gtzan

            gtzan.discover(self.data_dir)  # the <genre>/<song>.<ext> layout, or a ConfigError saying what to fix
        if self.demucs_weights is not None:
            from mirflow.pipelines.vocal_genre import demucs_backend

            demucs_backend.package_version()
            demucs_backend.checkpoint_files(self.demucs_weights)
        from mirflow.pipelines.vocal_genre.separation import separator_of

        separator_of(self.stem, demucs=self.demucs_weights is not None)  # a Demucs-only stem needs its weights
        if self.pretrained is not None and not (self.pretrained.strip()):
            raise ConfigError("pretrained is empty: give a run folder, a run id or a state dict file")
