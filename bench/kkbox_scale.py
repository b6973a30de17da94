"""Benchmark: kkbox_relisten's consolidate + split + transform at the real data set's
size (7.38 M train rows, 2.3 M songs, 34 k members; generated, ``bench.kkbox_data``)
against a plain pandas script doing the same joins and transforms, in the same run.

Each path runs in a fresh subprocess, one after the other: its wall and CPU seconds
and its peak resident memory (``VmHWM``). Targets: the pipeline's peak <= 8 GiB and
its time <= 1.2x the script's.

``python -m bench.kkbox_scale pipeline|pandas DATA_DIR OUT_DIR`` is one path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import fresh_store, timed
from bench.kkbox_data import kkbox_data

MAX_PEAK_GIB = 8.0
MAX_TIME_RATIO = 1.2
NEEDS_PREFECT = False  # stage functions only: no flow run


def data_sets(quick: bool) -> list:
    return []  # no GTZAN clips: this benchmark generates its own tables


def _pipeline(data_dir: str, out: Path) -> dict:
    """The flow's stage functions into a fresh store, as the flow calls them."""
    from mirflow.core.materialize import materialize
    from mirflow.core.store import ArtifactRef, ArtifactStore
    from mirflow.pipelines.kkbox_relisten import relisten

    store = ArtifactStore(str(out))
    joined, split, encoded = ArtifactRef("consolidate", "j"), ArtifactRef("split", "s"), ArtifactRef("transform", "t")
    materialize(store, joined, {}, relisten.write_consolidated, (data_dir, 0.05))
    materialize(store, split, {}, relisten.write_split, (store, joined, "chronological", (0.8, 0.1, 0.1), 0))
    summary = materialize(store, encoded, {}, relisten.write_transform, (store, joined, split, 2))["summary"]
    return {"vocabulary": summary["vocabulary"]}


def _pandas_script(data_dir: str, out: Path) -> dict:
    """What a plain pandas script does: read the CSVs, left-join, derive the report's
    fields with pandas string methods, encode with vocabularies and statistics of the
    first 80 % of rows (chronological training rows), write the inputs as Parquet."""
    import numpy as np
    import pandas as pd

    folder = Path(data_dir)
    train = pd.read_csv(folder / "train.csv", dtype={"target": np.int8})
    songs = pd.read_csv(folder / "songs.csv").drop_duplicates("song_id")
    extra = pd.read_csv(folder / "song_extra_info.csv").drop_duplicates("song_id")
    members = pd.read_csv(folder / "members.csv", parse_dates=["registration_init_time", "expiration_date"],
                          date_format="%Y%m%d").drop_duplicates("msno")
    df = train.merge(songs, on="song_id", how="left").merge(extra, on="song_id", how="left").merge(members, on="msno", how="left")
    out_df = pd.DataFrame(index=df.index)
    for field in ("msno", "song_id", "source_system_tab", "source_screen_name", "source_type", "gender"):
        out_df[field] = df[field].fillna("-1").astype(str)
    for field in ("language", "city", "registered_via"):
        out_df[field] = df[field].astype("Int64").astype(str).replace("<NA>", "-1")
    parts = {f: df[f].str.split(r"\s*\|\s*", regex=True) for f in ("genre_ids", "artist_name", "composer", "lyricist")}
    for name, field in (("genre", "genre_ids"), ("artist", "artist_name")):
        out_df[f"{name}1"], out_df[f"{name}2"] = parts[field].str[0].fillna("-1"), parts[field].str[1].fillna("-1")
        out_df[f"{name}_more"] = (parts[field].str.len() > 2).astype(float)
    out_df["composer1"], out_df["lyricist1"] = parts["composer"].str[0].fillna("-1"), parts["lyricist"].str[0].fillna("-1")
    first = parts["artist_name"].str[0]
    for role in ("composer", "lyricist"):
        out_df[f"artist_is_{role}"] = [float(isinstance(c, list) and a in c) for a, c in zip(first, parts[role])]
    out_df["isrc_country"] = df["isrc"].str[:2].fillna("-1")
    year = pd.to_numeric(df["isrc"].str[5:7], errors="coerce")
    out_df["isrc_year"] = year.where(year > 17, year + 100) + 1900
    out_df["song_length"] = df["song_length"].astype(float)
    out_df["membership_days"] = (df["expiration_date"] - df["registration_init_time"]).dt.days.astype(float)
    out_df["age"] = df["bd"].where(df["bd"].between(10, 80))
    is_train = np.arange(len(df)) < int(0.8 * len(df))
    encoded = {"target": df["target"].to_numpy(np.float32)}
    numeric = [f for f in out_df.columns if pd.api.types.is_float_dtype(out_df[f])]
    for field in out_df.columns.difference(numeric):
        counts = out_df.loc[is_train, field].value_counts()
        vocabulary = sorted(counts.index[counts >= 2])
        encoded[f"code_{field}"] = (pd.Categorical(out_df[field], categories=vocabulary).codes + 1).astype(np.int32)
    for field in numeric:
        values = out_df[field].astype(float)
        mean = values[is_train].mean()
        filled = values.fillna(mean)
        encoded[f"num_{field}"] = ((filled - filled[is_train].mean()) / (filled[is_train].std(ddof=0) or 1.0)).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(encoded).to_parquet(out / "encoded.parquet")
    return {"vocabulary": {f[5:]: int(v.max()) for f, v in encoded.items() if f.startswith("code_")}}


def _child(path: str, data_dir: str, out: str) -> None:
    import resource

    from mirflow.core.memory import peak_rss_bytes

    start = time.perf_counter()
    detail = {"pipeline": _pipeline, "pandas": _pandas_script}[path](data_dir, Path(out))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                      "peak_rss_gib": round(peak_rss_bytes() / 2**30, 2), **detail}))


def _measure(path: str, data_dir: Path) -> dict:
    out = fresh_store(f"kkbox-scale-{path}")
    with timed() as record:
        done = subprocess.run([sys.executable, "-m", "bench.kkbox_scale", path, str(data_dir), str(out)],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode:
        raise RuntimeError(f"{path} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": record}


def run(quick: bool) -> dict:
    scale = 0.1 if quick else 1.0
    with timed(wait=False) as generated:
        data_dir = kkbox_data(scale)
    sizes = json.loads((data_dir / "bench-data.json").read_text())["rows"]
    results = {path: _measure(path, data_dir) for path in ("pandas", "pipeline")}
    ratio = results["pipeline"]["seconds"] / results["pandas"]["seconds"]
    cpu_ratio = results["pipeline"]["cpu_seconds"] / results["pandas"]["cpu_seconds"]
    peak = results["pipeline"]["peak_rss_gib"]
    rows = [[path, r["seconds"], r["cpu_seconds"], r["peak_rss_gib"], f"{r['load']['others_cores']:.2f}"] for path, r in results.items()]
    return {
        "name": "kkbox_scale",
        "title": "KKBOX consolidate + transform at the real size",
        "setup": (f"Generated KKBOX tables at {scale:g}x the real size ({sizes['train']:,} train rows, {sizes['songs']:,} songs, "
                  f"{sizes['members']:,} members; generated in {generated['seconds']:.0f} s, cached). The pipeline: the flow's "
                  "consolidate, split (chronological) and transform stage functions into a fresh store; the script: plain pandas "
                  "(read_csv, merge, str methods, categorical codes) doing the same joins and transforms and writing its inputs "
                  "as Parquet. Each in a fresh subprocess, one after the other."),
        "tables": [{"columns": ["path", "wall s", "CPU s", "peak RSS GiB", "others' cores"], "rows": rows}],
        "targets": [
            {"what": f"pipeline peak memory <= {MAX_PEAK_GIB:g} GiB", "value": f"{peak:.2f} GiB", "met": peak <= MAX_PEAK_GIB},
            {"what": f"pipeline time <= {MAX_TIME_RATIO:g}x the pandas script's (wall)", "value": f"{ratio:.2f}x (CPU {cpu_ratio:.2f}x)",
             "met": ratio <= MAX_TIME_RATIO},
        ],
        "notes": [f"Same vocabulary sizes on both paths: {results['pipeline']['vocabulary'] == results['pandas']['vocabulary']}."],
        "results": results,
    }


if __name__ == "__main__":
    _child(*sys.argv[1:4])
