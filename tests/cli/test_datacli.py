"""`mirflow data ...` in-process: downloads from a local fault server, synthesis, checks, Parquet tables."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fault_server import FaultServer, status

from mirflow.cli import main
from mirflow.core.errors import ConfigError
from mirflow.datasets import NAMES, acousticbrainz, cifar100, get_dataset, gtzan, msd
from mirflow.datasets.base import RemoteFile
from mirflow.io.download import resolve_base_url

CLIP = b"RIFF not really audio"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "data"
    monkeypatch.setenv("MIRFLOW_DATA", str(home))
    return home


@pytest.fixture
def tiny_gtzan(monkeypatch):
    """gtzan's index replaced by one small archive; returns its bytes."""
    archive = _tar_gz({"genres/blues/blues.00000.wav": CLIP, "genres/README": b"tiny"})
    index = (RemoteFile("tiny.tar.gz", "tiny.tar.gz", len(archive), _sha256(archive), extract=True),)
    monkeypatch.setattr(gtzan, "INDEX", index)
    return archive


# --- get -------------------------------------------------------------------------------


def test_get_retries_verifies_extracts_then_requests_nothing(server, data_home, tiny_gtzan, monkeypatch, capsys):
    server.add("/mirror/tiny.tar.gz", tiny_gtzan, faults=[status(503)])
    monkeypatch.setenv("MIRFLOW_GTZAN_BASE_URL", server.url("mirror"))

    assert main(["data", "get", "gtzan"]) == 0
    assert [r.status for r in server.requests] == [503, 200]
    folder = data_home / "gtzan"
    assert (folder / "tiny.tar.gz").read_bytes() == tiny_gtzan
    assert (folder / "genres" / "blues" / "blues.00000.wav").read_bytes() == CLIP
    out = capsys.readouterr().out
    assert f"{folder / 'tiny.tar.gz'}: verified, extracted into {folder}" in out

    assert main(["data", "get", "gtzan"]) == 0
    assert len(server.requests) == 2  # already there and verified: nothing requested


def test_base_url_option_beats_environment_beats_module(monkeypatch):
    monkeypatch.delenv("MIRFLOW_MSD_BASE_URL", raising=False)
    assert resolve_base_url(msd) == msd.BASE_URL
    monkeypatch.setenv("MIRFLOW_MSD_BASE_URL", "http://mirror.example/msd")
    assert resolve_base_url(msd) == "http://mirror.example/msd"
    assert resolve_base_url(msd, "http://other.example") == "http://other.example"


def test_get_behind_login_prints_instructions_and_downloads_nothing(server, data_home, monkeypatch, capsys):
    monkeypatch.setenv("MIRFLOW_KKBOX_BASE_URL", server.url("kkbox"))
    assert main(["data", "get", "kkbox"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirflow: error: kkbox sits behind a login")
    assert "train.csv" in err and str(data_home / "kkbox") in err
    assert server.requests == []
    assert not (data_home / "kkbox").exists()


def test_download_task_wraps_the_same_download(server, data_home, tiny_gtzan, monkeypatch):
    from tasks.download import download_dataset

    server.add("/mirror/tiny.tar.gz", tiny_gtzan)
    assert download_dataset.retries == 3  # the stage defaults
    paths = download_dataset.fn("gtzan", data_home / "elsewhere", server.url("mirror"))
    assert paths == [data_home / "elsewhere" / "tiny.tar.gz"]
    assert (data_home / "elsewhere" / "genres" / "blues" / "blues.00000.wav").exists()
    with pytest.raises(ConfigError, match="behind a login"):
        download_dataset.fn("kkbox", data_home / "kkbox")


# --- fetch -----------------------------------------------------------------------------


def test_fetch_wrong_checksum_fails_and_leaves_nothing(server, tmp_path, capsys):
    data = b"someone's own data set" * 100
    url = server.add("/own/set.bin", data)
    wrong = "sha256:" + "0" * 64
    assert main(["data", "fetch", url, "--checksum", wrong, "--to", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirflow: error: checksum mismatch")
    assert url in err and wrong in err and _sha256(data) in err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_fetch_verifies_and_extracts(server, tmp_path, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("own/labels.csv", "clip,label\na,b\n")
    url = server.add("/own/set.zip", buffer.getvalue())
    dest = tmp_path / "dl"
    assert main(["data", "fetch", url, "--checksum", _sha256(buffer.getvalue()), "--to", str(dest), "--extract"]) == 0
    assert (dest / "own" / "labels.csv").read_text() == "clip,label\na,b\n"
    assert f"{dest / 'set.zip'}: verified" in capsys.readouterr().out


def test_fetch_wrong_checksum_keeps_the_file_already_there(server, tmp_path, capsys):
    url = server.add("/own/set.bin", b"what the server has")
    (tmp_path / "set.bin").write_bytes(b"the user's own set.bin")
    assert main(["data", "fetch", url, "--checksum", "sha256:" + "0" * 64, "--to", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("mirflow: error: checksum mismatch")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"set.bin": b"the user's own set.bin"}


def test_fetch_extract_refuses_a_member_replacing_a_folder(server, tmp_path, capsys):
    archive = _tar_gz({"fresh.txt": b"new", "results": b"a file named like the folder"})
    url = server.add("/own/set.tar.gz", archive)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "thesis.tex").write_bytes(b"two years of work")
    args = ["data", "fetch", url, "--checksum", _sha256(archive), "--to", str(tmp_path), "--extract"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mirflow: error: {tmp_path / 'set.tar.gz'}: member 'results' is a file, but {tmp_path / 'results'} "
                   "is a folder; nothing was extracted")
    assert (tmp_path / "results" / "thesis.tex").read_bytes() == b"two years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "set.tar.gz"]


def test_fetch_extract_stops_at_max_extract_bytes(server, tmp_path, capsys):
    archive = _tar_gz({"zeros.bin": bytes(2**20)})
    url = server.add("/own/zeros.tar.gz", archive)
    args = ["data", "fetch", url, "--checksum", _sha256(archive), "--to", str(tmp_path), "--extract"]
    assert main([*args, "--max-extract-bytes", "65536"]) == 2
    assert "unpacks to more than 65536 bytes" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["zeros.tar.gz"]
    assert main(args) == 0  # the default limit: 64 MiB for so small an archive
    assert (tmp_path / "zeros.bin").stat().st_size == 2**20


# --- synth -----------------------------------------------------------------------------

# n given to synth -> rows read_table gives back (kkbox: n train rows plus n // 4 test rows)
SYNTH = {"gtzan": (10, 10), "msd": (3, 3), "acousticbrainz": (4, 4), "kkbox": (20, 25), "cifar100": (6, 6)}


@pytest.mark.parametrize("name", NAMES)
def test_synth_writes_readable_files(name, tmp_path, capsys):
    n, rows = SYNTH[name]
    assert main(["data", "synth", name, "--out", str(tmp_path), "--n", str(n), "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith(f"synthesized {n} ")
    dataset = get_dataset(name)
    table, failures = dataset.read_table(dataset.list_files(tmp_path))
    assert (len(table), failures) == (rows, [])


# --- table -----------------------------------------------------------------------------


@pytest.mark.heavy
def test_table_converts_in_parallel_and_lists_unreadable_files(tmp_path, capsys):
    from distributed import LocalCluster

    copies = {name: tmp_path / name for name in ("gtzan", "acousticbrainz", "msd")}
    for name, folder in copies.items():
        assert main(["data", "synth", name, "--out", str(folder), "--n", str(SYNTH[name][0])]) == 0
    broken = {
        "gtzan": gtzan.write_corrupt_clip(copies["gtzan"] / "genres" / "blues" / "blues.00099.wav"),
        "acousticbrainz": copies["acousticbrainz"] / acousticbrainz.feature_dir("train") / "ff" / "ff-broken.json",
        # sorts first: read alone (shard size 1), its shard has no rows to take types from
        "msd": copies["msd"] / "data" / "0" / "0" / "0" / "TR000.h5",
    }
    broken["acousticbrainz"].parent.mkdir(parents=True)
    broken["acousticbrainz"].write_text("{not json")
    broken["msd"].parent.mkdir(parents=True)
    broken["msd"].write_bytes(b"not an HDF5 file")
    capsys.readouterr()

    outs = {name: tmp_path / "tables" / f"{name}.parquet" for name in copies}
    # gtzan on a local cluster of its own; the others on an existing scheduler
    assert main(["data", "table", "gtzan", str(copies["gtzan"]), "--out", str(outs["gtzan"]),
                 "--shard-size", "3", "--workers", "1"]) == 0  # fmt: skip
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for name, shard_size in (("acousticbrainz", "2"), ("msd", "1")):
            argv = ["data", "table", name, str(copies[name]), "--out", str(outs[name]), "--shard-size", shard_size]
            assert main([*argv, "--dask-address", cluster.scheduler_address]) == 0
    out = capsys.readouterr().out

    for name, path in broken.items():
        assert f"unreadable  {path}" in out
        failures = pd.read_csv(f"{outs[name]}.failures.csv")
        assert list(failures["path"]) == [str(path)] and failures["reason"].str.len().gt(0).all()
    assert f"wrote 10 rows from 11 files (4 shards) to {outs['gtzan']}" in out
    assert f"wrote 3 rows from 4 files (4 shards) to {outs['msd']}" in out

    clips = pq.read_table(outs["gtzan"])
    assert clips.num_rows == 10 and clips["clip_id"].to_pylist() == sorted(clips["clip_id"].to_pylist())
    assert clips.schema.field("duration_s").type == pa.float64()
    assert clips.schema.field("sample_rate").type == pa.int64()
    assert pa.types.is_string(clips.schema.field("genre").type) or pa.types.is_large_string(clips.schema.field("genre").type)

    features = pq.read_table(outs["acousticbrainz"])
    assert features.num_rows == 4 and features.num_columns == 1 + len(acousticbrainz.LAYOUT)
    assert {features.schema.field(c).type for c in acousticbrainz.LAYOUT} == {pa.float32()}

    songs = pq.read_table(outs["msd"])
    assert songs.num_rows == 3
    assert songs.schema.field("year").type == pa.int64()
    assert pa.types.is_list(songs.schema.field("artist_terms_freq").type)


# --- check -----------------------------------------------------------------------------


def test_check_per_clip_index_flags_missing_modified_and_unexpected(tmp_path, monkeypatch, capsys):
    clips = {"blues.00000": b"a", "blues.00001": b"b", "rock.00000": b"c", "rock.00001": b"d"}
    monkeypatch.setattr(gtzan, "checksum_index", lambda: {clip: _md5(data) for clip, data in clips.items()})

    def path(clip: str):
        return tmp_path / "genres" / clip.split(".")[0] / f"{clip}.wav"

    for clip, data in clips.items():
        path(clip).parent.mkdir(parents=True, exist_ok=True)
        path(clip).write_bytes(data)
    assert main(["data", "check", "gtzan", str(tmp_path)]) == 0
    assert "4 ok, 0 unverified, 0 missing, 0 corrupt, 0 unexpected" in capsys.readouterr().out

    path("blues.00001").write_bytes(b"B")
    path("rock.00001").unlink()
    path("rock.00002").write_bytes(b"e")
    assert main(["data", "check", "gtzan", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["corrupt", str(path("blues.00001")), "md5", _md5(b"B") + ",", "expected", _md5(b"b")]
    assert lines[1].split()[:2] == ["missing", "rock.00001"]
    assert lines[2].split()[:2] == ["unexpected", str(path("rock.00002"))]
    assert lines[3].endswith("2 ok, 0 unverified, 1 missing, 1 corrupt, 1 unexpected")


def test_check_index_files_flags_missing_modified_and_unexpected(data_home, monkeypatch, capsys):
    a, b, c = b"first", b"second", _tar_gz({"x": b"x"})
    monkeypatch.setattr(cifar100, "INDEX", (
        RemoteFile("a.bin", "a.bin", len(a), _sha256(a)),
        RemoteFile("b.bin", "b.bin", None, "md5:" + _md5(b)),
        RemoteFile("c.tar.gz", "c.tar.gz", None, _sha256(c), extract=True),
    ))  # fmt: skip
    folder = data_home / "cifar100"
    (folder / cifar100.FOLDER).mkdir(parents=True)  # extracted content: never unexpected
    (folder / "a.bin").write_bytes(a)
    (folder / "b.bin").write_bytes(b"changed")
    (folder / "c.tar").write_bytes(b"unpacked from c.tar.gz")
    (folder / ".c.tar.gz.extracted").write_text("marker")
    (folder / "c.tar.gz.part").write_bytes(c[:10])
    (folder / "stray.txt").write_text("?")

    assert main(["data", "check", "cifar100"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"corrupt     {folder / 'b.bin'}  md5 {_md5(b'changed')}, expected {_md5(b)}",
        f"missing     {folder / 'c.tar.gz'}  in the index",
        f"unexpected  {folder / 'c.tar.gz.part'}  interrupted download",
        f"unexpected  {folder / 'stray.txt'}  not in the index",
        f"cifar100 at {folder}: 1 ok, 0 unverified, 1 missing, 1 corrupt, 2 unexpected",
    ]


# --- list ------------------------------------------------------------------------------


def test_list_shows_every_dataset_and_its_local_state(data_home, capsys):
    msd.synthesize(data_home / "msd", 1)
    (data_home / "cifar100").mkdir()
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [re.match(r"(\w+) +(\?|[\d.]+ MiB) (yes|no) +(\w+) +\S", line).groups() for line in lines[1:-1]]
    assert rows == [
        ("gtzan", "?", "no", "absent"),
        ("msd", "?", "no", "present"),
        ("acousticbrainz", "?", "no", "absent"),
        ("kkbox", "?", "yes", "absent"),
        ("cifar100", "161.2 MiB", "no", "incomplete"),
    ]
