"""What flows share: Prefect flow options and model-input specifications."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from mirflow.extraction import TENSOR_COLUMN
from mirflow.features import FeatureSettings, feature_names
from mirflow.steps import InputSpec


def flow_options() -> dict:
    # Tasks run on threads in the flow process (~5 ms each); their heavy compute goes
    # to Dask workers as plain functions (see mirflow.cluster).
    return {"task_runner": ThreadPoolTaskRunner(max_workers=16), "validate_parameters": True, "log_prints": True}


def audio_input_specs(params) -> tuple[dict, dict[str, InputSpec]]:
    settings = FeatureSettings(sr=params.sample_rate)
    columns = tuple(feature_names(settings))
    specs = {
        model: InputSpec(model, columns, TENSOR_COLUMN, settings.n_mels, params.cnn_frames)
        for model in ("mlp", "cnn")
    }
    return settings.as_dict(), specs
