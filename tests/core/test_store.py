"""The artifact store: atomic artifacts, run folders, disk usage and garbage collection."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mirflow.cli import main
from mirflow.core.store import LEASE_MAX_AGE_S, STAGING_USAGE, ArtifactRef, ArtifactStore


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
    assert store.reuse(ref) and not store.reuse(ArtifactRef("scale", "00" * 32))
    store.take_lease("live")  # gc works on a remote store too, by its modification times
    assert store.collect_garbage(set()).in_use == 0 and not store.has(ref)  # made before the run
    with store.writing(ref) as writer:
        writer.write_bytes("x", b"2")
    assert store.collect_garbage(set()).in_use == 1 and store.has(ref)
    store.release_lease("live")
    assert store.collect_garbage(set()).artifacts == [ref]


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
    garbage = store.collect_garbage({keep})
    assert garbage.artifacts == [drop] and garbage.bytes >= 1000
    assert store.has(keep) and not store.has(drop)


def _artifact(store: ArtifactStore, key: str, age_s: float = 0) -> ArtifactRef:
    """A finished 1000-byte artifact, written ``age_s`` seconds ago."""
    ref = ArtifactRef("extract", key * 32)
    with store.writing(ref) as writer:
        writer.write_bytes("shard.parquet", b"0" * 1000)
    if age_s:
        _age(Path(store.root, "artifacts", "extract", key, ref.key, "_meta.json"), age_s)
    return ref


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _killed_run_staging(store: ArtifactStore) -> Path:
    folder = Path(store.root, ".tmp", "left-by-a-killed-run")
    folder.mkdir(parents=True)
    (folder / "half.parquet").write_bytes(b"1" * 500)
    _age(folder, 3600)
    return folder


def test_gc_never_touches_what_a_live_run_made_reuses_or_is_writing(tmp_path):
    store = ArtifactStore(str(tmp_path))
    old, reused = _artifact(store, "aa", age_s=3600), _artifact(store, "bb", age_s=3600)
    left = _killed_run_staging(store)
    store.take_lease("live-run")
    assert store.reuse(reused)  # a cache hit of the live run
    fresh = _artifact(store, "cc")
    with store.writing(ArtifactRef("extract", "dd" * 32)) as writer:  # the live run's work in progress
        writer.write_bytes("shard.parquet", b"2" * 700)
        planned = store.collect_garbage(set(), dry_run=True)
        assert store.collect_garbage(set()) == planned
    assert (planned.artifacts, planned.staging, planned.in_use) == ([old], 1, 3)
    assert planned.bytes > 1500 and planned.live_runs == ["live-run"]
    assert not store.has(old) and not left.exists()
    assert store.has(reused) and store.has(fresh) and store.has(ArtifactRef("extract", "dd" * 32))

    store.release_lease("live-run")  # the run ended without a run folder: all of it is garbage now
    assert len(store.collect_garbage(set()).artifacts) == 3 and store.list_artifacts() == []


def test_stale_leases_are_ignored_and_released(tmp_path):
    store = ArtifactStore(str(tmp_path))
    ref = _artifact(store, "aa")
    finished = subprocess.Popen(["true"])
    finished.wait()
    leases = tmp_path / "leases"
    leases.mkdir()
    (leases / "killed-here.json").write_text(json.dumps({"pid": finished.pid, "host": socket.gethostname()}))
    (leases / "killed-elsewhere.json").write_text(json.dumps({"pid": 1, "host": "another-host"}))
    _age(leases / "killed-elsewhere.json", LEASE_MAX_AGE_S + 60)
    _age(Path(store.root, "artifacts", "extract", "aa", ref.key, "_meta.json"), -60)  # made after both started
    planned = store.collect_garbage(set(), dry_run=True)
    assert sorted(planned.stale_leases) == ["killed-elsewhere", "killed-here"] and planned.in_use == 0
    assert len(list(leases.iterdir())) == 2  # a dry run releases nothing
    assert store.collect_garbage(set()) == planned
    assert list(leases.iterdir()) == [] and not store.has(ref)


def test_live_lease_on_another_host_holds_gc_back(tmp_path):
    store = ArtifactStore(str(tmp_path))
    (tmp_path / "leases").mkdir()
    (tmp_path / "leases" / "elsewhere.json").write_text(json.dumps({"pid": 1, "host": "another-host"}))
    ref = _artifact(store, "aa")
    garbage = store.collect_garbage(set())
    assert garbage.live_runs == ["elsewhere"] and garbage.in_use == 1 and store.has(ref)


def test_du_and_dry_run_count_tmp(tmp_path, capsys):
    store = ArtifactStore(str(tmp_path))
    _artifact(store, "aa", age_s=3600)
    _killed_run_staging(store)
    assert store.disk_usage()[STAGING_USAGE] == {"artifacts": 1, "bytes": 500}
    assert main(["store", "du", "--store", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [*STAGING_USAGE.split(), "1", "items", "0.0", "MiB"]
    assert main(["store", "gc", "--dry-run", "--store", str(tmp_path)]) == 0
    dry = capsys.readouterr().out
    assert dry.startswith("would remove 1 artifacts not referenced by any run and 1 .tmp folders")
    assert main(["store", "gc", "--store", str(tmp_path)]) == 0
    assert capsys.readouterr().out == dry.replace("would remove", "removed")
    assert store.disk_usage() == {}
