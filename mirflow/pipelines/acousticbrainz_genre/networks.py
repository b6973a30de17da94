"""What subtask-1 and stacked networks share: their shape (one hidden layer, its
parameter count checked against report 003's formula), their training settings, and
their ``outputs.parquet`` (per row: hidden activations and/or scores)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from mirflow.core.errors import MirflowError
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.models import build_model, count_parameters
from mirflow.stages import training

MODEL = training.MODEL
OUTPUTS = "outputs.parquet"  # row_id, hidden (subtask 1 only), scores: fixed-size float32 lists
FULL = "all"  # the fold name of a network trained on every training row


def fold_number(fold: str) -> int | None:
    """``"all"`` -> None (every training row), ``"3"`` -> 3."""
    return None if fold == FULL else int(fold)


def expected_parameters(n_in: int, hidden: int, n_out: int) -> int:
    """Report 003's count for one hidden layer: n_in·h + h + h·G + G."""
    return n_in * hidden + hidden + hidden * n_out + n_out


def network(n_in: int, n_out: int, config: dict) -> dict:
    return {"name": "mlp", "n_in": n_in, "n_out": n_out, "hidden": [config["hidden"]], "dropout": config["dropout"]}


def built(arch: dict, seed: int):
    """The network, after checking its parameter count against the formula."""
    model = build_model(arch, seed=seed)
    actual = count_parameters(model)
    expected = expected_parameters(arch["n_in"], arch["hidden"][0], arch["n_out"])
    if actual != expected:
        raise MirflowError(f"network {arch} has {actual} parameters, the formula n_in·h + h + h·G + G gives {expected}")
    return model, {"parameters": actual, "parameters_formula": expected, "architecture": arch}


def train_config(config: dict) -> training.TrainConfig:
    keys = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "seed")
    return training.TrainConfig(**{k: config[k] for k in keys}, task="multilabel")


def outputs_schema(widths: dict[str, int]) -> pa.Schema:
    return pa.schema([pa.field("row_id", pa.string())] + [pa.field(n, pa.list_(pa.float32(), w)) for n, w in widths.items()])


def fixed_lists(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values, np.float32).ravel()), values.shape[1])


def read_outputs(store: ArtifactStore, ref: ArtifactRef, column: str, row_ids: Sequence[str]) -> np.ndarray:
    """One output column (``hidden`` or ``scores``) of an artifact for ``row_ids``, in that order."""
    table = store.read_parquet(ref, OUTPUTS, columns=["row_id", column])
    positions = pd.Index(table.column("row_id").to_pylist()).get_indexer(list(row_ids))
    if (positions < 0).any():
        missing = list(row_ids)[int(np.argmin(positions))]
        raise MirflowError(f"{ref.stage} artifact {ref.key[:12]} has no {column} for row {missing!r}")
    values = table.column(column).combine_chunks()
    width = values.type.list_size
    return values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)[positions]

