"""Score raw KKBOX rows with a finished run: the run's transform and model, the side
tables (songs, song_extra_info, members) joined in, unknown users and songs through the
"unknown" index. ``mirflow score``, the ``kkbox_score`` flow and ``mirflow serve-model``
all use ``Scorer``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mirflow.core.errors import ConfigError, DataError
from mirflow.pipelines.kkbox_relisten import features as kf
from mirflow.pipelines.kkbox_relisten import relisten
from mirflow.pipelines.kkbox_relisten.evaluate import Model
from mirflow.runs import Run

MODEL_FILES = {"network": "models/network.pt", "lightgbm": "models/lightgbm.txt"}


class Scorer:
    """A run's model, loaded once, scoring DataFrames of ``kf.ROW_FIELDS``."""

    def __init__(self, run: Run, tables: str | Path | None = None, model: str | None = None):
        if run.manifest["flow"] != "kkbox_relisten":
            raise ConfigError(f"run {run.run_id} is a {run.manifest['flow']} run, not kkbox_relisten")
        self.run = run
        self.model_name = model or run.manifest["best_model"]
        if self.model_name not in MODEL_FILES or not run.store.run_has(run.run_id, MODEL_FILES[self.model_name]):
            raise ConfigError(f"run {run.run_id} has no {self.model_name} model; it has "
                              f"{[m for m, f in MODEL_FILES.items() if run.store.run_has(run.run_id, f)]}")
        self.transform = kf.Transform.from_dict(json.loads(run.file("transform.json")))
        self.model = Model(self.model_name, run.file(MODEL_FILES[self.model_name]), self.transform.cardinalities)
        folder = Path(tables or json.loads(run.file("inputs.json"))["tables"])
        missing = [f"{name}.csv" for name in kf.SIDE_KEYS if not (folder / f"{name}.csv").is_file()]
        if missing:
            raise ConfigError(f"tables folder {folder}: missing {missing} (give --tables DIR)")
        self.tables = folder
        self.sides = relisten.read_sides(folder)

    def encode(self, rows: pd.DataFrame) -> pd.DataFrame:
        return relisten.encode(self.transform, kf.derive(kf.join(rows[list(kf.ROW_FIELDS)].reset_index(drop=True), self.sides)))

    def score(self, rows: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """P(re-listen) per row, in order, and how many rows had an unknown user or song."""
        encoded = self.encode(rows)
        unknown = {f: int((encoded[f"code_{f}"] == kf.UNKNOWN).sum()) for f in ("msno", "song_id")}
        return self.model.predict(encoded), unknown


def read_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The KKBOX test layout (id + ``kf.ROW_FIELDS``), ``chunk_rows`` rows at a time, as
    strings; all-empty rows (the sample test.csv ends in thousands) are dropped."""
    needed = ["id", *kf.ROW_FIELDS]
    try:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_rows, usecols=lambda c: c in needed)
        for number, chunk in enumerate(reader):
            missing = [c for c in needed if c not in chunk.columns]
            if missing:
                raise DataError(path, f"missing column(s) {missing}; the KKBOX test layout is {needed}")
            chunk = chunk[(chunk[needed] != "").any(axis=1)]
            ids = pd.to_numeric(chunk["id"], errors="coerce")
            bad = ids.isna() | (ids != ids.round())
            if bad.any():
                line = int(chunk.index[bad.to_numpy()][0]) + 2  # header + 1-based
                raise DataError(path, f"line {line}: id {chunk['id'][bad].iloc[0]!r} is not an integer")
            yield chunk.assign(id=ids.astype(np.int64))
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(path, f"unreadable CSV: {error}") from error


def score_csv(scorer: Scorer, input_csv: str | Path, out: str | Path, chunk_rows: int = 100_000) -> dict:
    """Write ``id,target`` for every row of ``input_csv`` (the competition's submission
    format), chunk by chunk; the file appears only once complete."""
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    counts = {"rows": 0, "unknown_msno": 0, "unknown_song_id": 0}
    try:
        with open(partial, "w") as f:
            f.write("id,target\n")
            for chunk in read_chunks(input_csv, chunk_rows):
                scores, unknown = scorer.score(chunk)
                pd.DataFrame({"id": chunk["id"].to_numpy(), "target": scores}).to_csv(f, header=False, index=False, float_format="%.6f")
                counts["rows"] += len(chunk)
                counts["unknown_msno"] += unknown["msno"]
                counts["unknown_song_id"] += unknown["song_id"]
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return {**counts, "out": str(out), "model": scorer.model_name, "run_id": scorer.run.run_id}
