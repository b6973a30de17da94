"""Label new audio with a finished run's model, its extraction settings and its
fitted preprocessing, scoring each file as evaluation scores a clip."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mirflow.core.errors import ConfigError, DataError
from mirflow.io.audio import load_audio
from mirflow.pipelines.gtzan.extract import row_features
from mirflow.pipelines.gtzan.features import FeatureSettings
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.runs import Run
from mirflow.stages.scoring import InputSpec, Preprocessing, clip_probabilities, row_probabilities

AUDIO_SUFFIXES = {".wav", ".au", ".flac", ".mp3", ".ogg", ".aiff", ".aif", ".m4a"}


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
    """CSV-ready rows ``path, genre, p_<genre>…, error`` and the list of unusable files.

    Each file is scored as evaluation scores a clip (``mirflow.stages.scoring``), with
    the extraction settings, input spec and classes the model file records."""
    model_name = model_name or run.manifest["best_model"]
    _check_run(run, model_name)
    model, recorded = run.model(model_name)
    preprocessing = run.file("preprocessing.json")
    if hashlib.sha256(preprocessing).hexdigest() != recorded["preprocessing"]["sha256"]:
        raise ConfigError(f"run {run.run_id}: preprocessing.json is not the one model {model_name!r} was trained with; "
                          "re-run its flow")
    spec = InputSpec.from_dict(recorded["input"])
    prep = Preprocessing.from_dict(json.loads(preprocessing))
    settings = FeatureSettings(**spec.extraction["features"])
    # The run's own minimum; runs from before it was recorded get today's default.
    min_seconds = json.loads(run.file("inputs.json")).get("min_duration", GtzanParams.model_fields["min_duration"].default)
    classes = recorded["classes"]
    rows, errors = [], []
    for path in audio_files(inputs):
        try:
            y = load_audio(path, sr=settings.sr, min_seconds=min_seconds)
            frame = pd.DataFrame(
                [{**values, spec.tensor_column: logmel.ravel()} for values, logmel in row_features(y, settings, spec.extraction["segment_seconds"])]
            )
            _, (probabilities,) = clip_probabilities([str(path)] * len(frame), row_probabilities(model, frame, spec, prep))
        except DataError as error:
            errors.append((str(path), error.reason))
            rows.append({"path": str(path), "genre": "", "error": error.reason})
            continue
        rows.append(
            {"path": str(path), "genre": classes[int(probabilities.argmax())], **{f"p_{c}": p for c, p in zip(classes, probabilities)}, "error": ""}
        )
    columns = ["path", "genre", *[f"p_{c}" for c in classes], "error"]
    return pd.DataFrame(rows, columns=columns), errors
