"""Content-defined shards: inserting a file changes only the shard it lands in; a shard's
feature table is written row group by row group as it is extracted."""

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import soundfile as sf

from mirflow.core.errors import AudioDecodeError
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.pipelines.gtzan import extract as extraction
from mirflow.pipelines.gtzan.features import FeatureSettings
from mirflow.stages.featuresets import FAILURES, TABLE
from mirflow.stages.shards import plan_shards


def _clips(names):
    return pd.DataFrame({"rel_path": names, "clip_id": names, "label": "x", "group": names, "fingerprint": "f"})


def _membership(shards):
    return {tuple(c["rel_path"] for c in s.files) for s in shards}


def test_insert_changes_only_one_shard():
    names = [f"genres/rock/rock.{i:05d}.wav" for i in range(0, 400, 2)]
    before = _membership(plan_shards(_clips(names), 16))
    after = _membership(plan_shards(_clips(sorted(names + ["genres/rock/rock.00101.wav"])), 16))
    assert len(before - after) == 1  # the shard the new file joined (it may split in two)
    assert 1 <= len(after - before) <= 2
    assert sum(len(s) for s in after) == len(names) + 1


def test_shards_mix_labels_and_cover_every_clip():
    names = [f"genres/{g}/{g}.{i:05d}.wav" for g in ("blues", "jazz", "rock") for i in range(40)]
    clips = _clips(names).assign(label=[n.split("/")[1] for n in names])
    shards = plan_shards(clips, 20)
    assert sorted(c["rel_path"] for s in shards for c in s.files) == sorted(names)
    assert all(len({c["label"] for c in s.files}) > 1 for s in shards if len(s.files) >= 10)


def _decode_or_fail(decoded: list[str]):
    """A stand-in for load_audio: half a second of noise, or a DataError for 'bad' files."""

    def load(path, sr, min_seconds):
        decoded.append(path)
        if "bad" in path:
            raise AudioDecodeError(path, "not audio")
        return np.random.default_rng(len(decoded)).normal(0, 0.1, sr // 2).astype(np.float32)

    return load


def _records(n_good: int, n_bad: int) -> list[dict]:
    names = [f"good{i:03d}.wav" for i in range(n_good)] + [f"bad{i}.wav" for i in range(n_bad)]
    return [{"clip_id": n, "path": n, "rel_path": n, "label": "x", "group": n} for n in names]


def test_row_groups_are_yielded_before_the_next_clip_is_decoded(monkeypatch):
    decoded: list[str] = []
    monkeypatch.setattr(extraction, "load_audio", _decode_or_fail(decoded))
    groups = extraction.iter_shard_row_groups(_records(40, 0), FeatureSettings(), None, [])
    first = next(groups)
    # A worker holds one row group, never the whole shard: the 33rd clip is untouched.
    assert first.num_rows == extraction.SHARD_ROW_GROUP and len(decoded) == extraction.SHARD_ROW_GROUP
    assert [g.num_rows for g in groups] == [40 - extraction.SHARD_ROW_GROUP]


def test_feature_shard_artifact_is_written_row_group_by_row_group(monkeypatch, tmp_path):
    monkeypatch.setattr(extraction, "load_audio", _decode_or_fail([]))
    store, ref = ArtifactStore(str(tmp_path)), ArtifactRef("extract", "ef" * 32)
    settings = FeatureSettings().as_dict()
    with store.writing(ref) as writer:
        counts = extraction.write_feature_shard(writer, _records(35, 2), settings, None)
    assert counts == {"rows": 35, "failures": 2}
    table = store.read_parquet(ref, TABLE)
    assert table.schema == extraction.features_schema(FeatureSettings())
    assert table.column("row_id").to_pylist() == [f"good{i:03d}.wav" for i in range(35)]
    metadata = pq.ParquetFile(io.BytesIO(store.read_bytes(ref, TABLE))).metadata
    group_sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert group_sizes == [extraction.SHARD_ROW_GROUP, 35 - extraction.SHARD_ROW_GROUP]
    assert [f["path"] for f in store.read_json(ref, FAILURES)] == ["bad0.wav", "bad1.wav"]


def test_shard_of_only_unreadable_clips_writes_an_empty_table(monkeypatch, tmp_path):
    monkeypatch.setattr(extraction, "load_audio", _decode_or_fail([]))
    store, ref = ArtifactStore(str(tmp_path)), ArtifactRef("extract", "0f" * 32)
    with store.writing(ref) as writer:
        assert extraction.write_feature_shard(writer, _records(0, 1), FeatureSettings().as_dict(), None)["rows"] == 0
    assert store.read_parquet(ref, TABLE).num_rows == 0


def test_bad_audio_becomes_failures_with_reasons_and_short_clips_are_padded(tmp_path):
    sr = 22050
    tone = np.sin(np.arange(6 * sr) * 2 * np.pi * 440 / sr).astype(np.float32) * 0.5
    sf.write(tmp_path / "short.wav", tone[: int(1.5 * sr)], sr, subtype="FLOAT")  # above the minimum
    sf.write(tmp_path / "huge.wav", tone[:sr] * np.float32(1e30), sr, subtype="FLOAT")
    sf.write(tmp_path / "cut.wav", tone, sr, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "cut.wav").read_bytes()[:20_000])
    for n in (1, 10):
        sf.write(tmp_path / f"tiny{n}.wav", tone[:n], sr)
    names = ["short.wav", "huge.wav", "cut.wav", "tiny1.wav", "tiny10.wav"]
    clips = [{"clip_id": n, "path": str(tmp_path / n), "rel_path": n, "label": "x", "group": n} for n in names]

    table, failures = extraction.extract_shard(clips, FeatureSettings(sr=sr), 3.0, min_seconds=1.0)

    # The 1.5 s clip is zero-padded to one 3 s segment, as before; the rest are quarantined.
    assert table.column("row_id").to_pylist() == ["short.wav#000"]
    reasons = {f["path"]: f["reason"] for f in failures}
    assert list(reasons) == names[1:]
    assert "beyond 1000 times full scale" in reasons["huge.wav"]
    assert reasons["cut.wav"].startswith("truncated")
    assert reasons["tiny1.wav"].startswith("too short") and reasons["tiny10.wav"].startswith("too short")
