"""Audio shards → feature tables: one Parquet table per shard of clips.

Each row is one clip (or one segment of a clip) with its identity columns, the
tabular features of report 001 and its log-mel spectrogram as a float32 list (arrays,
not PNG images), with the spectrogram's frame count and per-band sums beside it (the
scale stage fits band statistics from those). A shard's table is written row group
by row group as it is extracted, so a worker's memory does not grow with shard size.
A clip that cannot be decoded, is truncated or is shorter than the minimum duration
becomes a failure record with its reason; it is never retried forever and never
silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from mirflow.core.errors import DataError
from mirflow.core.store import ArtifactWriter
from mirflow.io.audio import load_audio
from mirflow.pipelines.gtzan.features import FeatureSettings, extract_clip, feature_names
from mirflow.stages.classification import band_sums, spectrogram_summary_columns
from mirflow.stages.featuresets import FAILURES, TABLE
from mirflow.stages.scoring import InputSpec, clip_rows

SHARD_ROW_GROUP = 32
ID_COLUMNS = ("row_id", "clip_id", "rel_path", "label", "group", "segment")
TENSOR_COLUMN = "logmel"


def features_schema(settings: FeatureSettings) -> pa.Schema:
    fields = [
        pa.field("row_id", pa.string()),
        pa.field("clip_id", pa.string()),
        pa.field("rel_path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("group", pa.string()),
        pa.field("segment", pa.int32()),
    ]
    fields += [pa.field(name, pa.float64()) for name in feature_names(settings)]
    frames, band_sum, band_sum_sq = spectrogram_summary_columns(TENSOR_COLUMN)
    fields += [
        pa.field(TENSOR_COLUMN, pa.large_list(pa.float32())),
        pa.field(frames, pa.int32()),
        pa.field(band_sum, pa.list_(pa.float64(), settings.n_mels)),
        pa.field(band_sum_sq, pa.list_(pa.float64(), settings.n_mels)),
    ]
    return pa.schema(fields)


def iter_shard_row_groups(
    clips: Sequence[dict],
    settings: FeatureSettings,
    segment_seconds: float | None,
    failures: list[dict],
    min_seconds: float = 0.0,
) -> Iterator[pa.Table]:
    """Features for every clip of a shard, yielded as tables of ``SHARD_ROW_GROUP`` rows
    (the last may be shorter) as soon as they are extracted, so the caller can write
    each one out and a worker holds one row group, whatever the shard's size. Clips
    that cannot be used (see ``load_audio``: undecodable, truncated, absurd samples,
    shorter than ``min_seconds``) are appended to ``failures`` with the reason."""
    schema = features_schema(settings)
    frames_column, sum_column, square_column = spectrogram_summary_columns(TENSOR_COLUMN)
    rows: list[dict] = []
    logmels: list[np.ndarray] = []
    for clip in clips:
        try:
            y = load_audio(clip["path"], sr=settings.sr, min_seconds=min_seconds)
            extracted = row_features(y, settings, segment_seconds)
            for number, (values, logmel) in enumerate(extracted):
                band_sum, band_sum_sq = band_sums(logmel)
                whole = segment_seconds is None and len(extracted) == 1
                row_id = clip["clip_id"] if whole else f"{clip['clip_id']}#{number:03d}"
                rows.append(
                    {
                        "row_id": row_id,
                        "clip_id": clip["clip_id"],
                        "rel_path": clip["rel_path"],
                        "label": clip["label"],
                        "group": clip["group"],
                        "segment": number,
                        **values,
                        frames_column: logmel.shape[1],
                        sum_column: band_sum,
                        square_column: band_sum_sq,
                    }
                )
                logmels.append(logmel.ravel())
                if len(rows) == SHARD_ROW_GROUP:
                    yield _row_group(rows, logmels, schema)
                    rows, logmels = [], []
        except DataError as error:
            failures.append({"path": clip["rel_path"], "reason": error.reason})
    if rows:
        yield _row_group(rows, logmels, schema)


def row_features(y: np.ndarray, settings: FeatureSettings, segment_seconds: float | None) -> list[tuple[dict, np.ndarray]]:
    """Summary features and float32 log-mel of each row a clip is scored as
    (``scoring.clip_rows``): what extraction stores and what predict scores."""
    return [extract_clip(piece, settings) for piece in clip_rows(y, settings.sr, segment_seconds)]


def _row_group(rows: list[dict], logmels: list[np.ndarray], schema: pa.Schema) -> pa.Table:
    # Spectrograms go in as one flat buffer plus offsets: building the list column
    # row by row (Table.from_pylist) cost about half as much as the extraction itself.
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in logmels])]).astype(np.int64)
    columns = pa.Table.from_pylist(rows).to_pydict()
    columns[TENSOR_COLUMN] = pa.LargeListArray.from_arrays(offsets, np.concatenate(logmels))
    return pa.table(columns).select(schema.names).cast(schema)


def extract_shard(
    clips: Sequence[dict], settings: FeatureSettings, segment_seconds: float | None, min_seconds: float = 0.0
) -> tuple[pa.Table, list[dict]]:
    """Features for every clip of a shard as one table; returns (table, failures)."""
    failures: list[dict] = []
    groups = list(iter_shard_row_groups(clips, settings, segment_seconds, failures, min_seconds))
    return pa.concat_tables(groups) if groups else features_schema(settings).empty_table(), failures


def write_feature_shard(
    writer: ArtifactWriter, clips: Sequence[dict], settings: dict, segment_seconds: float | None, min_seconds: float = 0.0
) -> dict:
    """The extract stage: one shard's feature table and its failures, into one artifact.

    Row groups are written as they are extracted (small ones: readers stream a shard
    row group by row group, so a training batch never decodes a whole shard of
    spectrograms either)."""
    feature_settings = FeatureSettings(**settings)
    failures: list[dict] = []
    rows = writer.write_parquet_stream(
        TABLE,
        features_schema(feature_settings),
        iter_shard_row_groups(clips, feature_settings, segment_seconds, failures, min_seconds),
    )
    writer.write_json(FAILURES, failures)
    return {"rows": rows, "failures": len(failures)}


def audio_input_specs(sample_rate: int, cnn_frames: int, segment_seconds: float | None) -> tuple[dict, dict[str, InputSpec]]:
    """Extraction settings and how each model reads a row: the MLP the tabular
    features, the CNN the log-mel spectrogram (each spec carries the extraction settings,
    so a model file says how to score new audio)."""
    settings = FeatureSettings(sr=sample_rate)
    columns = tuple(feature_names(settings))
    extraction = {"features": settings.as_dict(), "segment_seconds": segment_seconds}
    specs = {
        model: InputSpec(model, columns, TENSOR_COLUMN, settings.n_mels, cnn_frames, extraction) for model in ("mlp", "cnn")
    }
    return settings.as_dict(), specs
