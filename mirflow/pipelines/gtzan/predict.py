"""Label new audio with a finished run's model, its extraction settings and its
fitted preprocessing. Long recordings are scored in windows and averaged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mirflow.core.errors import ConfigError, DataError
from mirflow.io.audio import load_audio, segment_waveform
from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.runs import Run
from mirflow.stages.classification import InputSpec, Preprocessing, model_inputs

AUDIO_SUFFIXES = {".wav", ".au", ".flac", ".mp3", ".ogg", ".aiff", ".aif", ".m4a"}
DEFAULT_WINDOW_SECONDS = 30.0  # GTZAN clip length: the unit whole-clip models were trained on


def audio_files(inputs: Sequence[str]) -> list[Path]:
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))
        else:
            files.append(item)  # a missing or odd file gets its own error row
    return files


def _check_run(run: Run, model_name: str) -> None:
    """Everything scoring needs from the run folder is there, before any audio is read."""
    trained = sorted(run.metrics["models"])
    if model_name not in trained:
        raise ConfigError(f"run {run.run_id} has no trained model {model_name!r}; it trained: {', '.join(trained)}")
    for name in ("inputs.json", "preprocessing.json", f"models/{model_name}.pt"):
        if not run.store.run_has(run.run_id, name):
            raise ConfigError(f"run {run.run_id} is missing {name} (in {run.store.run_location(run.run_id)}); re-run its flow")


def predict_files(run: Run, inputs: Sequence[str], model_name: str | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """CSV-ready rows ``path, genre, p_<genre>…, error`` and the list of unusable files."""
    model_name = model_name or run.manifest["best_model"]
    _check_run(run, model_name)
    config = json.loads(run.file("inputs.json"))
    spec_fields = config["specs"][model_name]
    spec = InputSpec(**{**spec_fields, "feature_columns": tuple(spec_fields["feature_columns"])})
    prep = Preprocessing.from_dict(json.loads(run.file("preprocessing.json")))
    settings = FeatureSettings(**config["features"])
    window = config.get("segment_seconds") or DEFAULT_WINDOW_SECONDS
    # The run's own minimum; runs from before it was recorded get today's default.
    min_seconds = config.get("min_duration", GtzanParams.model_fields["min_duration"].default)
    model, _ = run.model(model_name)
    classes = run.metrics["models"][model_name]["classes"]
    rows, errors = [], []
    for path in audio_files(inputs):
        try:
            probabilities = _score(path, model, spec, prep, settings, window, min_seconds)
        except DataError as error:
            errors.append((str(path), error.reason))
            rows.append({"path": str(path), "genre": "", "error": error.reason})
            continue
        rows.append(
            {"path": str(path), "genre": classes[int(probabilities.argmax())], **{f"p_{c}": p for c, p in zip(classes, probabilities)}, "error": ""}
        )
    columns = ["path", "genre", *[f"p_{c}" for c in classes], "error"]
    return pd.DataFrame(rows, columns=columns), errors


def _score(
    path: Path, model, spec: InputSpec, prep: Preprocessing, settings: FeatureSettings, window: float, min_seconds: float
) -> np.ndarray:
    y = load_audio(path, sr=settings.sr, min_seconds=min_seconds)
    # A recording up to 1.5 windows long is one window: padding it would distort its statistics.
    pieces = [y] if len(y) <= 1.5 * window * settings.sr else segment_waveform(y, settings.sr, window)
    frames = []
    for piece in pieces:
        values, logmel = extract_clip(piece, settings)
        frames.append({**values, spec.tensor_column: logmel.ravel()})
    x = torch.from_numpy(model_inputs(pd.DataFrame(frames), spec, prep))
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(x), dim=1).mean(dim=0).numpy()
