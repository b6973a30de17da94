"""The registry of flows: one line per flow, ``name: (flow, parameter model)`` as
"module:attribute" strings, so reading it imports neither Prefect nor any flow. The CLI
(``mirflow run NAME``) and ``mirflow serve`` load a flow by name from here."""

from __future__ import annotations

import importlib

FLOWS = {
    "gtzan": ("flows.gtzan:gtzan", "mirflow.pipelines.gtzan.params:GtzanParams"),
    "msd_hotness": ("flows.msd_hotness:msd_hotness", "mirflow.pipelines.msd_hotness.params:MsdHotnessParams"),
    "acousticbrainz_genre": (
        "flows.acousticbrainz_genre:acousticbrainz_genre",
        "mirflow.pipelines.acousticbrainz_genre.params:AcousticBrainzParams",
    ),
    "cnn_benchmark": ("flows.cnn_benchmark:cnn_benchmark", "mirflow.pipelines.cnn_benchmark.params:CnnBenchmarkParams"),
}


def _load(target: str):
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_flow(name: str):
    """The Prefect flow registered as ``name`` (its module is imported now, with Prefect)."""
    return _load(FLOWS[name][0])


def params_model(name: str):
    """The pydantic parameter model of flow ``name`` (no Prefect import)."""
    return _load(FLOWS[name][1])


def entrypoint(name: str) -> str:
    """The prefect.yaml entrypoint of flow ``name``: ``flows/gtzan.py:gtzan``."""
    module, _, function = FLOWS[name][0].partition(":")
    return f"{module.replace('.', '/')}.py:{function}"
