"""Song-level stratified k-fold over slices, and its leakage audit (report 004's warning:
slicing songs before splitting puts slices of one song on both sides).

Every slice carries its song id; folds are assigned to songs (``kfold_assignments`` with
the song as the group), so a song's slices share one fold. In round ``k`` fold ``k`` is
the test set, a stratified share of the other folds' songs is the validation set (best
epoch) and the rest trains. Each song is tested exactly once: out-of-fold predictions.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from mirflow.core.store import ArtifactRef, ArtifactStore, ArtifactWriter
from mirflow.stages.leakage import group_problems, verdict
from mirflow.stages.splits import kfold_assignments, split_train_val_test

FOLDS = "folds.parquet"  # one row per slice: row_id, song, label, slice, fold, round_0..round_{k-1}


def round_column(k: int) -> str:
    return f"round_{k}"


def write_song_folds(writer: ArtifactWriter, store: ArtifactStore, songs: list[tuple[str, str, str, ArtifactRef]], k: int,
                     validation_fraction: float, seed: int) -> dict:
    """``songs``: (song id, label, group, separated artifact). The slice table with each
    round's split; songs whose audio could not be read (no slices) are left out and listed.
    The group is the song, or its duplicates' shared id (GTZAN's repeated recordings)."""
    counts = {song: store.read_json(ref, "summary.json") for song, _, _, ref in songs}
    rows = pd.DataFrame([(f"{song}#{i}", song, label, group, i) for song, label, group, _ in songs
                         for i in range(counts[song]["slices"])],
                        columns=["row_id", "song", "label", "group", "slice"]).set_index("row_id", drop=False)
    rows["fold"] = kfold_assignments(rows["label"], rows["group"], k=k, seed=seed).to_numpy()
    for fold in range(k):
        train = rows[rows["fold"] != fold]
        held = split_train_val_test(train["label"], train["group"], seed=seed + fold,
                                    fractions=(1 - validation_fraction, validation_fraction, 0.0))
        rows[round_column(fold)] = held.astype(str).reindex(rows.index).fillna("test").to_numpy()
    writer.write_parquet(FOLDS, pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False))
    failures = [{"path": counts[song]["path"], "reason": counts[song]["failure"]} for song in counts if "failure" in counts[song]]
    return {"songs": int(rows["song"].nunique()), "slices": len(rows), "folds": k, "failures": failures,
            "songs_per_fold": rows.groupby("fold")["song"].nunique().astype(int).tolist()}


def read_folds(store: ArtifactStore, ref: ArtifactRef) -> pd.DataFrame:
    return store.read_parquet(ref, FOLDS).to_pandas().set_index("row_id", drop=False)


def audit_folds(store: ArtifactStore, ref: ArtifactRef) -> dict:
    """Re-read the saved folds: no song (nor group of duplicates) in two folds, and in no
    round one on two sides (train, validation, test). Raises LeakageError listing every problem."""
    rows = read_folds(store, ref)
    problems: list[str] = []
    for unit in ("song", "group"):
        folds_per = rows.groupby(unit)["fold"].nunique()
        if (split := folds_per[folds_per > 1]).size:
            problems.append(f"{split.size} {unit}s have slices in more than one fold, e.g. {sorted(split.index)[:5]}")
    for column in [c for c in rows.columns if c.startswith("round_")]:
        problems += [f"round {column[6:]}: {p}" for p in group_problems(rows[column].rename("split"), rows["group"])]
    return verdict(problems, rows["group"].nunique(), 0, " (song-level folds)")
