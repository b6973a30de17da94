"""Which split a GTZAN run uses: the artist-filtered lists on the standard GTZAN (or when
asked), a random group split elsewhere, and the report line naming it."""

from __future__ import annotations

import pandas as pd
import pytest

from mirflow.core.errors import ConfigError
from mirflow.datasets import gtzan
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.pipelines.gtzan.splits import choose_split, split_note
from mirflow.stages.splits import listed_split


def _clips(ids) -> pd.DataFrame:
    """A discover()-shaped listing of .wav clips; choose_split reads no audio unless asked to verify checksums."""
    return pd.DataFrame({"clip_id": list(ids), "path": [f"/nowhere/{i.split('.')[0]}/{i}.wav" for i in ids]})


STANDARD = _clips(sorted(gtzan.checksum_index()))


def test_filtered_lists_are_the_published_443_197_290_clips_of_the_index():
    listed = gtzan.filtered_split()
    counts = pd.Series(list(listed.values())).value_counts().to_dict()
    assert counts == {"train": 443, "validation": 197, "test": 290}
    assert listed.keys() <= gtzan.checksum_index().keys()
    # spot checks against torchaudio's lists
    assert (listed["blues.00029"], listed["blues.00000"], listed["blues.00012"]) == ("train", "validation", "test")
    assert "jazz.00054" in listed and "hiphop.00001" not in listed


def test_standard_gtzan_defaults_to_filtered_other_folders_to_random():
    assert choose_split(None, None, "stat", STANDARD).name == "filtered"
    assert choose_split(None, None, "stat", STANDARD.iloc[1:]).name == "random"  # one clip missing: not the standard copy
    assert choose_split("random", None, "stat", STANDARD).name == "random"
    assert choose_split(None, "splits.csv", "stat", STANDARD).name == "file"
    own = _clips([f"{g}.{i:05d}" for g in ("blues", "rock") for i in range(12)])
    chosen = choose_split("filtered", None, "stat", own)
    assert chosen.name == "filtered" and chosen.listed == dict(gtzan.filtered_split())


def test_content_fingerprint_also_needs_the_published_checksums(tmp_path):
    # same names, but bytes that are not GTZAN's: with --fingerprint content it is not the standard copy
    paths = []
    for clip_id in STANDARD["clip_id"]:
        path = tmp_path / clip_id.split(".")[0] / f"{clip_id}.wav"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not gtzan")
        paths.append(str(path))
    clips = STANDARD.assign(path=paths)
    assert choose_split(None, None, "stat", clips).name == "filtered"
    assert choose_split(None, None, "content", clips).name == "random"


def test_filtered_needs_gtzan_names_and_excludes_split_file():
    with pytest.raises(ConfigError, match="none of the clips"):
        choose_split("filtered", None, "stat", _clips(["mine.1", "mine.2"]))
    with pytest.raises(ValueError, match="give one"):
        GtzanParams(split="filtered", split_file="splits.csv")


def test_report_line_names_the_split_with_its_counts():
    summary = {"rows": {"train": 443, "validation": 197, "test": 289}, "excluded": 70}
    filtered = split_note(choose_split(None, None, "stat", STANDARD), summary)
    assert "**filtered**" in filtered and "929 rows" in filtered and "70 clips outside the lists excluded" in filtered
    random = split_note(choose_split(None, None, "stat", STANDARD.iloc[1:]), {**summary, "excluded": 0})
    assert "**random**" in random and "Artist leakage is not controlled" in random


def test_filtered_split_of_the_shared_real_clips(realdata):
    """70 real clips (*.00000-00006): listed clips go where the lists say, the 4 unlisted
    are excluded, and training gets no blues, classical or country."""
    clips = gtzan.discover(realdata / "gtzan")
    chosen = choose_split("filtered", None, "stat", clips)
    split = listed_split(chosen.listed, clips["clip_id"].tolist())
    assert sorted(set(clips["clip_id"]) - set(split.index)) == ["hiphop.00001", "metal.00004", "reggae.00003", "reggae.00005"]
    assert all(split[c] == gtzan.filtered_split()[c] for c in split.index)
    genres = split.index.str.split(".").str[0]
    assert set(genres[split == "train"]) == {"disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"}
    assert split.value_counts().to_dict() == {"train": 28, "validation": 34, "test": 4}
