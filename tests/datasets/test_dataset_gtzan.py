"""GTZAN module: layout discovery, header table, checksum index, synthetic generator."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mirflow.core.errors import ConfigError, DataError
from mirflow.datasets import gtzan
from mirflow.datasets.base import RemoteFile

SR = gtzan.SAMPLE_RATE


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """3 short clips per genre, plus two deliberately corrupt ones."""
    out = tmp_path_factory.mktemp("synth")
    paths = gtzan.synthesize(out, n_per_genre=3, seed=7, duration_s=2.0, corrupt=2)
    return out, paths


def _wav(path, seconds=0.5, fmt="WAV", subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * SR), np.float32), SR, format=fmt, subtype=subtype)
    return path


# --- contract ----------------------------------------------------------------------------


def test_contract_constants():
    assert gtzan.NAME == "gtzan" and gtzan.LOGIN_INSTRUCTIONS is None
    assert gtzan.GENRES == (
        "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
    )  # fmt: skip
    (archive,) = gtzan.INDEX
    assert isinstance(archive, RemoteFile) and archive.extract
    assert f"{gtzan.BASE_URL}/{archive.url}" == "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
    assert archive.checksum == "md5:5b3d6dddb579ab49814ab86dba69e7c7"  # mirdata's REMOTES["all"]


# --- discovery ---------------------------------------------------------------------------


def test_discover_synthesized_copy_from_parent_or_genres(synth):
    out, paths = synth
    clips = gtzan.discover(out)
    assert list(clips.columns) == ["clip_id", "path", "genre", "group"]
    assert len(clips) == 32  # 30 good + 2 corrupt, both with valid names
    assert clips["clip_id"].is_monotonic_increasing and clips["clip_id"].is_unique
    assert (clips["group"] == clips["clip_id"]).all()
    assert set(clips["genre"]) == set(gtzan.GENRES)
    assert all(cid.startswith(f"{g}.") for cid, g in zip(clips["clip_id"], clips["genre"]))
    assert sorted(map(str, paths)) == sorted(clips["path"])
    pd.testing.assert_frame_equal(gtzan.discover(out / "genres"), clips)
    assert gtzan.list_files(out) == [Path(p) for p in clips["path"]]


def test_discover_ignores_hidden_appledouble_and_non_audio(tmp_path):
    for genre in ("blues", "rock"):
        _wav(tmp_path / "genres" / genre / f"{genre}.00000.wav")
    (tmp_path / "genres" / "blues" / "._blues.00000.wav").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 200)
    _wav(tmp_path / "genres" / "rock" / ".rock.00009.wav")
    _wav(tmp_path / "genres" / ".trash" / "pop.00000.wav")
    _wav(tmp_path / "genres" / "__MACOSX" / "rock" / "rock.00001.wav")
    (tmp_path / "genres" / "input.mf").write_text("marsyas collection file")
    (tmp_path / "genres.tar.gz").write_bytes(b"not looked at")
    assert list(gtzan.discover(tmp_path)["clip_id"]) == ["blues.00000", "rock.00000"]


def test_discover_marsyas_au_layout(tmp_path, synth):
    out, _ = synth
    for genre in ("jazz", "metal"):
        y, sr = sf.read(out / "genres" / genre / f"{genre}.00000.wav", dtype="int16")
        dest = tmp_path / "genres" / genre / f"{genre}.00000.au"
        dest.parent.mkdir(parents=True)
        sf.write(dest, y, sr, format="AU", subtype="PCM_16")  # big-endian .au, as marsyas ships
    clips = gtzan.discover(tmp_path / "genres")
    assert list(clips["clip_id"]) == ["jazz.00000", "metal.00000"]
    assert all(p.endswith(".au") for p in clips["path"])
    table, failures = gtzan.read_table(clips["path"])
    assert failures == [] and (table["sample_rate"] == SR).all()
    assert table["duration_s"].tolist() == pytest.approx([2.0, 2.0])


def test_discover_users_collection_other_formats(tmp_path):
    _wav(tmp_path / "ambient" / "night drive.flac", fmt="FLAC")
    _wav(tmp_path / "ambient" / "take.001.ogg", fmt="OGG", subtype="VORBIS")
    _wav(tmp_path / "techno" / "Track 1.WAV")
    clips = gtzan.discover(tmp_path)
    assert dict(zip(clips["clip_id"], clips["genre"])) == {
        "Track 1": "techno",
        "night drive": "ambient",
        "take.001": "ambient",  # "take" is no genre: not a mislabelled GTZAN name
    }
    table, failures = gtzan.read_table(clips["path"])
    assert failures == [] and table["duration_s"].tolist() == pytest.approx([0.5] * 3, abs=0.01)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no audio files"),
        ({"README.txt": "x"}, "no audio files"),
        ({"blues.00000.wav": "wav", "rock/rock.00000.wav": "wav"}, "directly inside a genre folder"),
        ({"gtzan/genres/blues/blues.00000.wav": "wav", "gtzan/genres/rock/rock.00000.wav": "wav"},
         "directly inside a genre folder"),
        ({"genres/blues/blues.00000.wav": "wav", "genres/blues/blues.00001.wav": "wav"}, "only one genre folder"),
        ({"genres/blues/blues.00000.wav": "wav", "genres/rock/jazz.00003.wav": "wav"}, r"named jazz"),
        ({"genres/blues/blues.00000.wav": "wav", "genres/blues/blues.00000.au": "wav", "genres/rock/r.wav": "wav"},
         "share a name"),
    ],
)  # fmt: skip
def test_discover_rejects_bad_layouts(tmp_path, layout, message):
    for rel, kind in layout.items():
        if kind == "wav":
            _wav(tmp_path / rel)
        else:
            (tmp_path / rel).write_text(kind)
    with pytest.raises(ConfigError, match=message):
        gtzan.discover(tmp_path)


def test_discover_missing_data_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        gtzan.discover(tmp_path / "nowhere")


# --- real samples ------------------------------------------------------------------------


def test_real_samples_discover_and_header_table(realdata):
    clips = gtzan.discover(realdata / "gtzan")
    assert len(clips) == 70
    assert clips["genre"].value_counts().to_dict() == {g: 7 for g in gtzan.GENRES}
    table, failures = gtzan.read_table(clips["path"])
    assert failures == [] and len(table) == 70
    assert table["duration_s"].between(15, 31).all()
    assert (table["sample_rate"] == SR).all() and (table["channels"] == 1).all()
    country = table.set_index("clip_id").loc["country.00000", "duration_s"]
    assert country == pytest.approx(30.08, abs=0.01)


def test_real_samples_against_checksum_index(realdata):
    report = gtzan.check_checksums(realdata / "gtzan").set_index("clip_id")
    # the one full-length sample is bit-exact; the others are truncated copies
    assert report.loc["country.00000", "status"] == "ok"
    assert report["status"].value_counts().to_dict() == {"missing": 930, "mismatch": 69, "ok": 1}


# --- checksum index ----------------------------------------------------------------------


def test_checksum_index_is_complete_and_well_formed():
    index = gtzan.checksum_index()
    assert len(index) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for md5 in index.values())
    per_genre = pd.Series([cid.split(".")[0] for cid in index]).value_counts().to_dict()
    assert per_genre == {g: 100 for g in gtzan.GENRES}
    assert set(index) == {f"{g}.{i:05d}" for g in gtzan.GENRES for i in range(100)}
    with pytest.raises(TypeError):
        index["blues.00000"] = "0" * 32  # read-only: a test cannot corrupt it for others


def test_check_checksums_flags_modified_and_missing_files(tmp_path, realdata):
    original = realdata / "gtzan" / "genres" / "country" / "country.00000.wav"
    assert hashlib.md5(original.read_bytes()).hexdigest() == gtzan.checksum_index()["country.00000"]
    for genre, name in (("country", "country.00000.wav"), ("rock", "rock.00000.wav")):
        (tmp_path / "genres" / genre).mkdir(parents=True)
        shutil.copyfile(original, tmp_path / "genres" / genre / name)
    assert gtzan.check_checksums(tmp_path).set_index("clip_id").loc["country.00000", "status"] == "ok"
    data = bytearray(original.read_bytes())
    data[5000] ^= 1  # one flipped bit in the audio
    (tmp_path / "genres" / "country" / "country.00000.wav").write_bytes(data)
    report = gtzan.check_checksums(tmp_path).set_index("clip_id")
    assert report.loc["country.00000", "status"] == "mismatch"
    assert report.loc["rock.00000", "status"] == "mismatch"
    assert report.loc["jazz.00054", "status"] == "missing"


def test_check_checksums_leaves_non_wav_unindexed(tmp_path):
    _wav(tmp_path / "genres" / "blues" / "blues.00000.au", fmt="AU")
    _wav(tmp_path / "genres" / "rock" / "my song.wav")
    report = gtzan.check_checksums(tmp_path).set_index("clip_id")
    assert report.loc[["blues.00000", "my song"], "status"].tolist() == ["unindexed", "unindexed"]
    assert (report["status"] == "missing").sum() == 999  # blues.00000 exists, only as .au


# --- reading -----------------------------------------------------------------------------


def test_read_table_reports_unreadable_files(synth, tmp_path):
    out, paths = synth
    table, failures = gtzan.read_table(paths)
    assert len(table) == 30 and {f.path for f in failures} == {str(p) for p in paths[-2:]}
    known = gtzan.write_corrupt_clip(tmp_path / "jazz.00054.wav")
    _, failures = gtzan.read_table([known])
    assert "known to be unreadable" in failures[0].reason


def test_read_file_decodes_a_clip(synth):
    pytest.importorskip("mirflow.io.audio")
    out, paths = synth
    record = gtzan.read_file(paths[0])
    assert record["clip_id"] == "blues.00000" and record["genre"] == "blues" and record["sr"] == SR
    assert record["waveform"].dtype == np.float32 and record["waveform"].shape == (2 * SR,)
    with pytest.raises(DataError, match=re.escape(str(paths[-1]))):
        gtzan.read_file(paths[-1])


# --- synthesis ---------------------------------------------------------------------------


def test_synthesized_clips_are_real_pcm_wavs_marked_synthetic(synth):
    out, paths = synth
    good = paths[:-2]
    assert [p.name for p in good[:3]] == ["blues.00000.wav", "blues.00001.wav", "blues.00002.wav"]
    for path in good:
        with sf.SoundFile(path) as f:
            assert (f.format, f.subtype, f.samplerate, f.channels, f.frames) == ("WAV", "PCM_16", SR, 1, 2 * SR)
            assert "SYNTHETIC" in f.comment and f.genre == path.parent.name
        y, _ = sf.read(path)
        assert 0.05 < np.abs(y).max() <= 1.0
    assert "SYNTHETIC" in (out / gtzan.SYNTHETIC_MARKER).read_text()
    assert gtzan.is_synthetic(out) and gtzan.is_synthetic(out / "genres")


def test_corrupt_clips_do_not_decode(synth):
    _, paths = synth
    for path in paths[-2:]:
        with pytest.raises(sf.LibsndfileError):
            sf.read(path)


def test_synthesize_is_deterministic_per_seed(tmp_path):
    def digests(folder, seed):
        paths = gtzan.synthesize(folder, 4, seed, duration_s=0.5, genres=("disco", "metal"))
        return [hashlib.md5(p.read_bytes()).hexdigest() for p in paths]

    first = digests(tmp_path / "a", 3)
    assert first == digests(tmp_path / "b", 3)
    assert set(first).isdisjoint(digests(tmp_path / "c", 4))
    assert len(set(first)) == 4  # clips of one genre differ from each other


def test_synthesize_counts(tmp_path):
    paths = gtzan.synthesize(tmp_path, 8, duration_s=0.2, genres=("rock", "jazz", "pop"))
    assert pd.Series([p.parent.name for p in paths]).value_counts().to_dict() == {"rock": 3, "jazz": 3, "pop": 2}
    assert not gtzan.is_synthetic(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 5, "n_per_genre": 1},
        {"n": 1, "genres": ("rock", "jazz")},
        {"genres": ("rock", "polka")},
        {"genres": ("rock",)},
        {"duration_s": 0},
    ],
)
def test_synthesize_rejects_bad_parameters(tmp_path, kwargs):
    with pytest.raises(ConfigError, match="synthesize"):
        gtzan.synthesize(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())  # rejected before writing anything


def test_synthetic_genres_are_learnable(tmp_path):
    """Logistic regression on simple clip features, cross-validated on 6 clips per genre,
    is far above chance (0.1)."""
    librosa = pytest.importorskip("librosa")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    paths = gtzan.synthesize(tmp_path, n_per_genre=6, seed=11, duration_s=3.0)
    mel_basis = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=40)
    chroma_basis = librosa.filters.chroma(sr=SR, n_fft=2048, tuning=0.0)
    rows = []
    with threadpool_limits(1):  # tiny matrices: BLAS threads only contend on a shared machine
        for path in paths:
            y, _ = sf.read(path, dtype="float32")
            power = np.abs(librosa.stft(y)) ** 2
            logmel = librosa.power_to_db(mel_basis @ power)
            mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=13)
            onsets = librosa.onset.onset_strength(S=logmel, sr=SR)
            tempo = librosa.feature.tempo(onset_envelope=onsets, sr=SR)[0]
            centroid = librosa.feature.spectral_centroid(S=np.sqrt(power), sr=SR).mean()
            chroma = (chroma_basis @ power).mean(axis=1)
            rows.append(np.r_[mfcc.mean(1), mfcc.std(1), centroid, chroma / chroma.sum(), tempo])
        labels = [p.parent.name for p in paths]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        folds = StratifiedKFold(3, shuffle=True, random_state=0)
        accuracy = cross_val_score(model, np.array(rows), labels, cv=folds).mean()
    assert accuracy >= 0.5
