"""cnn_benchmark's flow parameters (report 000, project B)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mirflow.core.errors import ConfigError
from mirflow.core.params import RunParams

Stage = Literal["images", "normalise", "train"]
ModelName = Literal["allcnn_c", "resnet20", "resnet18", "resnet50", "mobilenet_v2", "resnext50_32x4d", "densenet201"]

# Report 000's set-up: 50 epochs, batch size per model (what fitted its 12 GB GPU), 100 inference batches.
REPORT_PRESET = {
    "models": ["allcnn_c", "resnet20", "resnet18", "mobilenet_v2"],
    "max_epochs": 50,
    "batch_sizes": {"allcnn_c": 500, "resnet20": 128, "resnet18": 256, "mobilenet_v2": 100},
    "batch_size": 64,  # models the report did not train
    "inference_batches": 100,
    "stem": "imagenet",
    "image_size": None,  # the report's 224x224 for the pretrained models: image_size=224
}


class CnnBenchmarkParams(RunParams):
    """Accuracy x parameters x memory x time of image CNNs on CIFAR-100 (report 000, project B).

    The defaults are a demo that takes minutes on two cores; ``preset="report"`` fills in the
    report's set-up for every field not given."""

    force: list[Stage] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
    preset: Literal["demo", "report"] = Field("demo", description="report: 50 epochs, 224x224 inputs, the report's batch sizes.")
    models: list[ModelName] = Field(["allcnn_c", "resnet20", "mobilenet_v2"], description="Models to benchmark.")
    stem: Literal["imagenet", "small"] = Field(
        "small", description="Stem of the models that have one: imagenet (7x7 stride 2 + max-pool) or small (3x3 stride 1).")
    label: Literal["fine", "coarse"] = Field("fine", description="CIFAR-100's 100 fine classes or its 20 superclasses.")
    image_size: int | None = Field(
        16, ge=8, le=512,
        description="Resize images to this side batch by batch (random resized crops in training). Empty: native 32.")
    max_epochs: int = Field(3, ge=1, le=10_000)
    # The demo's 32, not 64: with the report's SGD lr 0.01, 3 epochs of ~1,000 images at 64 were
    # ~50 steps, too few for MobileNet v2 (its BatchNorm running statistics and weights had not
    # settled: validation at chance while the training loss fell) and All-CNN-C (no BatchNorm,
    # heavy dropout: 2x chance). Twice the steps at the same cost per epoch took them to ~0.76 and
    # ~0.5 (chance 0.1); a larger lr instead made both diverge (lr 0.05: NaN / chance).
    batch_size: int = Field(32, ge=1, le=4096, description="Training batch size of models not in batch_sizes.")
    batch_sizes: dict[str, int] = Field(
        default_factory=dict, description="Training batch size per model (on the command line: resnet18=256,allcnn_c=500).")
    lr: float = Field(0.01, gt=0, le=1.0, description="SGD learning rate (report: 0.01, momentum 0.9).")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-3, ge=0)
    lr_step_epochs: int = Field(5, ge=1, description="Multiply the learning rate by lr_step_factor every this many epochs.")
    lr_step_factor: float = Field(0.8, gt=0, lt=1)
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Share of the training images held out to pick the best epoch.")
    inference_batches: int = Field(10, ge=1, le=10_000, description="Batches of 100 test images timed for inference.")
    threads: int | None = Field(None, ge=1, description="torch threads per model. Empty: every core (models run one at a time).")
    parallel: bool = Field(False, description="Train models at the same time (a cluster with room); costs then interfere.")
    pretrained: dict[str, str] = Field(
        default_factory=dict, description="Local state dict per model (on the command line: resnet18=/path/weights.pt).")
    features_from: str | None = Field(
        None, description="A finished gtzan run (id): benchmark on its log-mels (1x128x128 crops) in its own split.")
    demo_images: int = Field(1200, ge=12, le=60_000, description="Images in the generated demo data set.")
    demo_classes: int = Field(
        10, ge=2, le=100, description="Fine classes in the generated demo set (spread over the 100; up to 20 differ in colour).")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset") == "report":
            data = {**REPORT_PRESET, **data}
        if isinstance(data, dict) and data.get("features_from") and "image_size" not in data:
            data = {**data, "image_size": None}  # log-mel crops at their own 128 x 128
        return data

    @field_validator("batch_sizes", "pretrained", mode="before")
    @classmethod
    def _pairs(cls, value):
        """``model=value,model=value`` (the command line's form) as a dict."""
        if not isinstance(value, str):
            return value
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        if any(not sep or not key.strip() for key, sep, _ in pairs):
            raise ValueError(f"{value!r} must be model=value pairs separated by commas")
        return {key.strip(): item.strip() for key, _, item in pairs}

    def check_inputs(self) -> None:
        super().check_inputs()
        unknown = sorted(set(self.batch_sizes) - set(self.models))
        if unknown:
            raise ConfigError(f"batch_sizes names models not in models: {unknown}")
        if self.features_from is not None:
            from mirflow.core.store import ArtifactStore
            from mirflow.pipelines.cnn_benchmark.logmels import open_logmel_run

            if self.data_dir is not None:
                raise ConfigError("give data_dir (CIFAR-100) or features_from (a gtzan run), not both")
            open_logmel_run(ArtifactStore(self.store), self.features_from)
        elif self.data_dir is not None:
            from mirflow.datasets import cifar100

            missing = [str(path) for path in cifar100.list_files(self.data_dir) if not path.is_file()]
            if missing:
                raise ConfigError(f"data_dir {self.data_dir}: no CIFAR-100 python-format split files {missing}")


def model_spec(params: CnnBenchmarkParams, model: str, n_classes: int, in_channels: int) -> dict:
    spec = {"name": model, "n_classes": n_classes, "in_channels": in_channels}
    if model not in ("allcnn_c", "resnet20"):  # small-input by design: no stem to choose
        spec["stem"] = params.stem
    return spec


def train_config(params: CnnBenchmarkParams, model: str) -> dict:
    """The training recipe of ``model`` (TrainConfig's fields): the report's SGD with a step schedule."""
    return {"optimizer": "sgd", "lr": params.lr, "momentum": params.momentum, "weight_decay": params.weight_decay,
            "scheduler": "step", "step_epochs": params.lr_step_epochs, "plateau_factor": params.lr_step_factor,
            "batch_size": params.batch_sizes.get(model, params.batch_size), "max_epochs": params.max_epochs,
            "patience": params.max_epochs, "seed": params.seed}
