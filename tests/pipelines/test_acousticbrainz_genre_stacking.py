"""The stack and evaluate stages on generated member outputs: the leak of in-sample
stacking is visible as a gap between training and test scores that cross-fitting closes.

The subtask-1 networks are simulated (their outputs written directly), so the test
runs in seconds: like an overfitted network, each one's outputs on the rows it was
fitted on carry the genres far more clearly than its outputs on rows it never saw.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.acousticbrainz_genre import evaluate, stacking
from mirflow.pipelines.acousticbrainz_genre.networks import FULL, OUTPUTS, fixed_lists, outputs_schema
from mirflow.pipelines.acousticbrainz_genre.targets import TARGETS, TAXONOMIES
from mirflow.stages.splits import SPLIT

SOURCES = {"discogs": 4, "lastfm": 3}  # source -> genres
HIDDEN = 8
CONFIG = dict(hidden=16, dropout=0.0, lr=1e-2, weight_decay=0.0, batch_size=32, max_epochs=40, patience=8, seed=0)


def write(store: ArtifactStore, stage: str, files: dict) -> ArtifactRef:
    ref = ArtifactRef(stage, uuid.uuid4().hex)
    with store.writing(ref) as writer:
        for name, value in files.items():
            (writer.write_parquet if isinstance(value, pa.Table) else writer.write_json)(name, value)
    return ref


def write_stage(store: ArtifactStore, func, *args) -> ArtifactRef:
    ref = ArtifactRef("stage", uuid.uuid4().hex)
    with store.writing(ref) as writer:
        writer.write_json("summary.json", func(writer, *args))
    return ref


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    """300 recordings (180 train in two folds, 60 validation, 60 test), genres of two
    sources, and per source the members: the full network and one per held-out fold."""
    rng = np.random.default_rng(0)
    store = ArtifactStore(str(tmp_path_factory.mktemp("ab_stacking")))
    n = 300
    ids = [f"r{i:03d}" for i in range(n)]
    part = np.repeat(["train", "validation", "test"], [180, 60, 60])
    fold = np.where(part == "train", np.arange(n) % 2, -1)
    split = pd.DataFrame({"row_id": ids, "recordingmbid": ids, "group": ids, "split": part, "fold": fold.astype("int32")})
    truth = {s: rng.random((n, g)) < 0.35 for s, g in SOURCES.items()}
    names = {s: [f"{s}-genre{j}" for j in range(g)] for s, g in SOURCES.items()}
    targets = pd.DataFrame([
        {"source": s, "recordingmbid": m, "releasegroupmbid": m, "official_split": "train",
         "genres": [names[s][j] for j in np.flatnonzero(truth[s][i])]}
        for s in SOURCES for i, m in enumerate(ids)
    ])
    refs = {"split": write(store, "split", {SPLIT: pa.Table.from_pandas(split, preserve_index=False)}),
            "targets": write(store, "targets", {TARGETS: pa.Table.from_pandas(targets, preserve_index=False), TAXONOMIES: names})}
    members: dict[str, dict[str, ArtifactRef]] = {}
    train = part == "train"
    for source, genres in SOURCES.items():
        y = truth[source].astype(float)
        units = rng.normal(size=(genres, HIDDEN))  # the same in every network of a source: only the leak differs
        for name in (FULL, "0", "1"):
            fitted = train & (fold != int(name)) if name != FULL else train
            clarity = np.where(fitted, 3.0, 0.25)[:, None]  # memorised rows vs unseen rows
            hidden = (clarity * (2 * y - 1)) @ units + rng.normal(size=(n, HIDDEN))
            scores = 1 / (1 + np.exp(-(clarity * (2 * y - 1) + rng.normal(size=y.shape))))
            embedded = (fold == int(name)) | ~train if name != FULL else np.ones(n, bool)
            table = pa.Table.from_arrays(
                [pa.array(np.array(ids)[embedded]), fixed_lists(hidden[embedded]), fixed_lists(scores[embedded])],
                schema=outputs_schema({"hidden": HIDDEN, "scores": genres}),
            )
            summary = {"source": source, "fold": name, "parameters": 1, "parameters_formula": 1, "train_seconds": 0.0,
                       "best_epoch": 1}
            members.setdefault(source, {})[name] = write(store, "train", {OUTPUTS: table, "summary.json": summary})
    return {"store": store, "members": members, **refs}


def test_in_sample_stacking_scores_its_training_rows_higher_than_test_rows_and_cross_fitting_does_not(generated):
    store, g = generated["store"], generated
    stacked = {mode: write_stage(store, stacking.write_stacked_model, store, g["split"], g["targets"], "lastfm", g["members"],
                                 mode, CONFIG) for mode in stacking.MODES}
    assert store.read_json(stacked["crossfit_scores"], "summary.json")["architecture"]["n_in"] == sum(SOURCES.values())
    assert store.read_json(stacked["crossfit"], "summary.json")["architecture"]["n_in"] == len(SOURCES) * HIDDEN
    evaluated = write_stage(store, evaluate.write_source_evaluation, store, g["split"], g["targets"], "lastfm",
                            g["members"]["lastfm"], stacked, 0)
    systems = store.read_json(evaluated, evaluate.METRICS)["systems"]
    gap = {mode: systems[f"subtask2-{mode}"]["train"]["roc_auc_macro"] - systems[f"subtask2-{mode}"]["test"]["roc_auc_macro"]
           for mode in stacking.MODES}
    assert gap["insample"] > gap["crossfit"] + 0.1, gap
    assert gap["insample"] > gap["crossfit_scores"] + 0.1, gap
