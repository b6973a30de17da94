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
    "kkbox_relisten": ("flows.kkbox_relisten:kkbox_relisten", "mirflow.pipelines.kkbox_relisten.params:KkboxRelistenParams"),
    "kkbox_score": ("flows.kkbox_score:kkbox_score", "mirflow.pipelines.kkbox_relisten.params:KkboxScoreParams"),
    "cnn_benchmark": ("flows.cnn_benchmark:cnn_benchmark", "mirflow.pipelines.cnn_benchmark.params:CnnBenchmarkParams"),
    "vocal_genre": ("flows.vocal_genre:vocal_genre", "mirflow.pipelines.vocal_genre.params:VocalGenreParams"),
}


def training_flows() -> list[str]:
    """The flows that run a pipeline on a data set (their parameters are ``RunParams``),
    each with a scheduled deployment; the others (``kkbox_score``) use a finished run."""
    from mirflow.core.params import RunParams

    return [name for name in FLOWS if issubclass(params_model(name), RunParams)]


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
