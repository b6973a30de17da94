"""The artifact store: atomic artifacts, run folders, disk usage and garbage collection."""

import pytest

from mirflow.core.store import ArtifactRef, ArtifactStore


def test_artifact_visible_only_after_block_completes(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    ref = ArtifactRef("extract", "ab" * 32)
    with pytest.raises(RuntimeError):
        with store.writing(ref) as writer:
            writer.write_bytes("part.bin", b"half")
            raise RuntimeError("killed mid-write")
    assert not store.has(ref)
    assert store.list_artifacts() == []
    with store.writing(ref, {"note": "x"}) as writer:
        writer.write_json("data.json", {"a": 1})
    assert store.has(ref)
    assert store.read_json(ref, "data.json") == {"a": 1}
    assert store.meta(ref)["note"] == "x"


def test_leftover_without_meta_is_not_valid_and_gets_replaced(tmp_path):
    store = ArtifactStore(str(tmp_path))
    ref = ArtifactRef("split", "cd" * 32)
    leftover = tmp_path / "artifacts" / "split" / "cd" / ref.key
    leftover.mkdir(parents=True)
    (leftover / "split.parquet").write_bytes(b"garbage from a killed run")
    assert not store.has(ref)
    with store.writing(ref) as writer:
        writer.write_bytes("split.parquet", b"good")
    assert store.read_bytes(ref, "split.parquet") == b"good"


def test_memory_filesystem_url(tmp_path):
    store = ArtifactStore("memory://mirflow-test-store")
    ref = ArtifactRef("scale", "ef" * 32)
    with store.writing(ref) as writer:
        writer.write_bytes("x", b"1")
    assert store.has(ref) and store.read_bytes(ref, "x") == b"1"


def test_runs_du_and_gc(tmp_path):
    store = ArtifactStore(str(tmp_path))
    keep, drop = ArtifactRef("train", "11" * 32), ArtifactRef("train", "22" * 32)
    for ref in (keep, drop):
        with store.writing(ref) as writer:
            writer.write_bytes("model.pt", b"0" * 1000)
    store.write_run_file("r1", "manifest.json", {"stages": []})
    assert store.list_runs() == ["r1"]
    usage = store.disk_usage()
    assert usage["train"]["artifacts"] == 2 and usage["train"]["bytes"] >= 2000
    removed, freed = store.collect_garbage({keep})
    assert removed == [drop] and freed >= 1000
    assert store.has(keep) and not store.has(drop)
