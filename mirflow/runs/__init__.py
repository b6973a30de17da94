"""Run folders: what a run produced and everything needed to reproduce or reuse it.

    runs/<run_id>/manifest.json   code commit + dirty flag, package versions, data
                                  fingerprint, parameters, seeds, per-stage time/memory
    runs/<run_id>/params.json, metrics.json, report.md, <model>_confusion.png
    runs/<run_id>/models/<model>.pt, preprocessing.json, inputs.json  (what predict needs)
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mirflow.core.errors import ConfigError
from mirflow.core.fingerprint import stable_hash
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.runs import report

if TYPE_CHECKING:  # pandas, pydantic and torch: imported where used (`runs list` answers within 1 s)
    import pandas as pd
    import torch
    from pydantic import BaseModel

    from mirflow.stages.featuresets import FeatureSet

PACKAGES = ("mirflow", "prefect", "dask", "distributed", "numpy", "pandas", "pyarrow", "h5py", "torch", "librosa", "scikit-learn")


def new_run_id(flow: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{flow}-{uuid.uuid4().hex[:6]}"


def code_version() -> dict:
    """The git commit of the mirflow checkout and whether it had local changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass(frozen=True)
class Selection:
    """How a run picks its best model: a metric on a split, never on test."""

    split: str = "validation"
    metric: str = "macro_f1"
    higher_is_better: bool = True


@dataclass
class RunOutputs:
    """What a pipeline hands to ``write_run``: per-model metrics (each a dict with one
    sub-dict per split plus model-level figures), files for the run folder, figures to
    show in the report (caption -> file name), quarantined inputs and extra manifest fields."""

    metrics_by_model: dict[str, dict]
    files: dict[str, bytes | str | dict | list] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_cross_validation(self, fold_metrics: list[dict[str, dict]], shown: Sequence[str]) -> None:
        """``--folds``: each fold's metrics by model (the held-out fold is its ``test``)
        summarised as mean ± std per metric, into ``cross_validation`` of each model's
        metrics and a report table of the ``shown`` metrics."""
        models = {model: [fold[model]["test"] for fold in fold_metrics] for model in fold_metrics[0]}
        summaries = {model: report.cross_validation(folds) for model, folds in models.items()}
        for model, summary in summaries.items():
            self.metrics_by_model.setdefault(model, {})["cross_validation"] = summary
        self.notes.append(report.cross_validation_note(summaries, len(fold_metrics), shown))


def write_run(
    store: ArtifactStore,
    run_id: str,
    flow: str,
    params: BaseModel,
    stages: list[dict],
    outputs: RunOutputs,
    selection: Selection = Selection(),
) -> dict:
    """Fill the run folder (any pipeline); returns paths, the report and its table rows."""
    best = best_model(outputs.metrics_by_model, selection)
    for name, data in outputs.files.items():
        store.write_run_file(run_id, name, data)
    manifest = {
        "run_id": run_id,
        "flow": flow,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "packages": package_versions(),
        # the inputs of the first (data-reading) stage: what the run read
        "data_fingerprint": stable_hash(sorted(s["inputs"] for s in stages if s["stage"] == stages[0]["stage"]) if stages else []),
        "params": params.model_dump(mode="json"),
        "seeds": {"seed": getattr(params, "seed", None)},
        "stages": stages,
        "best_model": best,
        "selection": dataclasses.asdict(selection),
        "failures": outputs.failures,
        **outputs.extra,
    }
    text = report.render_report(
        f"{flow} report", run_id, outputs.metrics_by_model, best, selection, outputs.failures, stages, outputs.figures, outputs.notes
    )
    store.write_run_file(run_id, "manifest.json", manifest)
    store.write_run_file(run_id, "params.json", params.model_dump(mode="json"))
    store.write_run_file(run_id, "metrics.json", {"best_model": best, "models": outputs.metrics_by_model})
    store.write_run_file(run_id, "report.md", text)
    return {
        "run_id": run_id,
        "run_dir": store.run_location(run_id),
        "report_path": f"{store.run_location(run_id)}/report.md",
        "report_markdown": text,
        "best_model": best,
        "rows": report.metrics_rows(outputs.metrics_by_model),
        "failures": len(outputs.failures),
    }


def best_model(metrics_by_model: dict[str, dict], selection: Selection = Selection()) -> str | None:
    """The model with the best ``selection.metric`` on ``selection.split``."""
    scored = {
        model: result[selection.split][selection.metric]
        for model, result in metrics_by_model.items()
        if result.get(selection.split, {}).get(selection.metric) is not None
    }
    if not scored:
        return None
    return (max if selection.higher_is_better else min)(scored, key=scored.get)


def latest_manifest(store: ArtifactStore, flow: str, before: str | None = None) -> dict | None:
    for run_id in reversed(store.list_runs()):
        if flow in run_id and run_id != before and store.run_has(run_id, "manifest.json"):
            return Run(store, run_id).manifest
    return None


@dataclass
class Run:
    """A finished run, for the CLI and for Python users: ``Run.open(store, run_id)``."""

    store: ArtifactStore
    run_id: str

    @classmethod
    def open(cls, store: str | ArtifactStore, run_id: str) -> Run:
        store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)
        matches = [r for r in store.list_runs() if r == run_id or r.startswith(run_id) or r.endswith(run_id)]
        if len(matches) != 1 or not store.run_has(matches[0], "manifest.json"):
            raise ConfigError(f"run {run_id!r} not found in {store.url} ({len(matches)} matches); see `mirflow runs list`")
        return cls(store, matches[0])

    def _json(self, name: str):
        import json

        return json.loads(self.store.read_run_file(self.run_id, name))

    @property
    def manifest(self) -> dict:
        return self._json("manifest.json")

    @property
    def metrics(self) -> dict:
        return self._json("metrics.json")

    @property
    def report(self) -> str:
        return self.store.read_run_file(self.run_id, "report.md").decode()

    def model(self, name: str | None = None) -> tuple[torch.nn.Module, dict]:
        """(model, inputs): the network rebuilt from its file alone, and what the file
        records of its inputs (see ``training.save_model``)."""
        from mirflow.stages import training  # torch, only for what reads models

        name = name or self.manifest["best_model"]
        path = f"models/{name}.pt"
        return training.load_model_bytes(self.store.read_run_file(self.run_id, path), f"{self.store.run_location(self.run_id)}/{path}")

    def predictions(self, name: str | None = None) -> pd.DataFrame:
        """One row per clip (mean over its rows), with the clip's split."""
        import pandas as pd

        name = name or self.manifest["best_model"]
        return pd.read_parquet(io.BytesIO(self.store.read_run_file(self.run_id, f"predictions/{name}.parquet")))

    def file(self, name: str) -> bytes:
        return self.store.read_run_file(self.run_id, name)

    def feature_set(self) -> FeatureSet:
        """The run's feature set: its first (data-reading) stage's shards."""
        from mirflow.stages.featuresets import FeatureSet

        stages = self.manifest["stages"]
        first = stages[0]["stage"]  # the data-reading stage: extract, etl, …
        return FeatureSet(self.store, tuple(ArtifactRef(first, s["key"]) for s in stages if s["stage"] == first))

    def features(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The run's feature table, read back from its first (data-reading) stage's shards."""
        features = self.feature_set()
        return features.read(columns or [f.name for f in features.schema() if f.name != "logmel"])

    def split(self) -> ArtifactRef | None:
        """The run's train/validation/test split (its stage labelled ``split``; folds are labelled
        ``split[fold k]``), None for a run without one."""
        found = [s["key"] for s in self.manifest["stages"] if s["stage"] == "split" and s["label"] == "split"]
        return ArtifactRef("split", found[0]) if found else None


def resolve_run(run_dir: str, store: str) -> Run:
    """A run folder path (…/runs/<id>) or a run id inside ``store``."""
    path = Path(run_dir)
    if path.is_dir() and path.parent.name == "runs":
        return Run.open(ArtifactStore(str(path.parent.parent)), path.name)
    return Run.open(store, run_dir)


def check_writable(out: str) -> None:
    """Fail before scoring when the CSV cannot be written there. Its folder is created;
    an existing file is opened for appending (which changes nothing), otherwise a probe
    file is made and removed, so a failure leaves no empty CSV behind."""
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            open(path, "a").close()
        else:
            tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as error:
        raise ConfigError(f"cannot write --out {out}: {error.strerror or error}") from error


def list_runs(store: ArtifactStore) -> list[dict]:
    """One row per finished run: flow, tag, best model and its headline metric."""
    rows = []
    for run_id in store.list_runs():
        if not store.run_has(run_id, "manifest.json"):
            continue
        run = Run(store, run_id)
        manifest, scores = run.manifest, run.metrics
        selection = Selection(**manifest.get("selection", {}))
        best = scores.get("best_model")
        headline = scores["models"].get(best, {}) if best else {}
        rows.append(
            {
                "run_id": run_id,
                "flow": manifest["flow"],
                "tag": manifest["params"].get("tag"),
                "best_model": best,
                "metric": selection.metric,
                selection.split: headline.get(selection.split, {}).get(selection.metric),
                "test": headline.get("test", {}).get(selection.metric),
                "commit": (manifest["code"]["commit"] or "")[:8] + ("+" if manifest["code"]["dirty"] else ""),
            }
        )
    return rows


def compare_runs(store: ArtifactStore, first: str, second: str) -> dict:
    """Metrics side by side and every manifest field that differs."""
    a, b = Run.open(store, first), Run.open(store, second)
    metric = Selection(**a.manifest.get("selection", {})).metric
    rows = {}
    for run in (a, b):
        for row in report.metrics_rows(run.metrics["models"]):
            rows.setdefault((row["model"], row["split"]), {})[run.run_id] = row.get(metric)
    metrics_table = [{"model": m, "split": s, **values} for (m, s), values in rows.items()]
    differences = _diff(a.manifest, b.manifest, ignore={"run_id", "created", "stages"})
    stage_keys = {
        s["label"]: (s["key"][:12], t["key"][:12])
        for s in a.manifest["stages"]
        for t in b.manifest["stages"]
        if s["label"] == t["label"] and s["key"] != t["key"]
    }
    return {"runs": [a.run_id, b.run_id], metric: metrics_table, "manifest_differences": differences, "stages_with_new_keys": stage_keys}


def _diff(a, b, ignore=frozenset(), prefix="") -> dict:
    if isinstance(a, dict) and isinstance(b, dict):
        out = {}
        for key in sorted(set(a) | set(b)):
            if key in ignore:
                continue
            out.update(_diff(a.get(key), b.get(key), frozenset(), f"{prefix}{key}."))
        return out
    return {} if a == b else {prefix.rstrip("."): [a, b]}


def referenced_artifacts(store: ArtifactStore) -> set[ArtifactRef]:
    """Every stage artifact some run folder was built from: what `store gc` keeps."""
    keep = set()
    for run_id in store.list_runs():
        if store.run_has(run_id, "manifest.json"):
            keep |= {ArtifactRef(s["stage"], s["key"]) for s in Run(store, run_id).manifest["stages"]}
    return keep
