"""Group-exclusive stratified splits, k-fold assignments and predefined split files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mirflow.core.errors import ConfigError
from mirflow.stages.splits import (
    SPLIT_DTYPE,
    SPLIT_LIST_FILES,
    audit_group_overlap,
    kfold_assignments,
    load_split_file,
    split_train_val_test,
    validate_split,
)

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def uneven_data(seed: int, n_groups: int = 120, n_classes: int = 4):
    """Rows of groups with 1..12 rows each (geometric sizes), one class per group."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.geometric(0.3, n_groups), 12)
    groups = np.repeat([f"artist{g}" for g in range(n_groups)], sizes)
    labels = np.repeat(rng.integers(0, n_classes, n_groups), sizes)
    return labels, groups


def splits_per_group(split: pd.Series, groups) -> pd.Series:
    return pd.Series(split.to_numpy()).groupby(np.asarray(groups)).nunique()


@pytest.mark.parametrize("seed", range(25))
def test_every_group_lies_in_exactly_one_split(seed):
    labels, groups = uneven_data(seed)
    split = split_train_val_test(labels, groups, seed=seed)
    assert (splits_per_group(split, groups) == 1).all()
    assert audit_group_overlap(split, groups) == []
    assert set(split.unique()) == {"train", "validation", "test"}


def test_class_proportions_are_kept_in_every_split():
    labels, groups = uneven_data(0, n_groups=400)
    split = split_train_val_test(labels, groups, fractions=(0.6, 0.2, 0.2), seed=1)
    shares = pd.crosstab(labels, split.to_numpy(), normalize="index")
    assert np.allclose(shares["train"], 0.6, atol=0.05)
    assert np.allclose(shares["validation"], 0.2, atol=0.05)
    assert np.allclose(shares["test"], 0.2, atol=0.05)


def test_tiny_data_ten_genres_by_six_songs_gives_four_one_one_per_genre():
    labels = np.repeat(GENRES, 6 * 10)  # 3 s segments: 10 per song, 6 songs per genre
    songs = np.repeat([f"{g}.{i:05d}" for g in GENRES for i in range(6)], 10)
    split = split_train_val_test(labels, songs, seed=0)
    per_genre_songs = pd.crosstab(labels, split.to_numpy()) // 10
    assert (per_genre_songs["train"] == 4).all()
    assert (per_genre_songs["validation"] == 1).all()
    assert (per_genre_songs["test"] == 1).all()
    assert (splits_per_group(split, songs) == 1).all()


def test_classes_with_fewer_groups_than_splits_still_fill_every_split():
    labels = np.repeat(GENRES, 2)
    split = split_train_val_test(labels, None, seed=4)
    assert set(split.unique()) == {"train", "validation", "test"}
    assert split.value_counts()["train"] >= 10


def test_fewer_groups_than_non_empty_splits_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 3 groups"):
        split_train_val_test(["a", "a", "b"], ["s1", "s1", "s2"], seed=0)
    only_train_and_test = split_train_val_test(["a", "a", "b"], ["s1", "s1", "s2"], fractions=(0.5, 0, 0.5), seed=0)
    assert set(only_train_and_test.unique()) == {"train", "test"}


def test_same_seed_same_split_other_seed_other_split():
    labels, groups = uneven_data(3)
    first = split_train_val_test(labels, groups, seed=7)
    assert first.equals(split_train_val_test(labels, groups, seed=7))
    assert not first.equals(split_train_val_test(labels, groups, seed=8))


def test_split_is_indexed_by_row_ids_and_categorical():
    labels = pd.Series(np.repeat(["a", "b"], 10), index=[f"row{i}" for i in range(20)])
    split = split_train_val_test(labels, None, seed=0)
    assert list(split.index) == list(labels.index)
    assert split.dtype == SPLIT_DTYPE and split.name == "split"


@pytest.mark.parametrize(
    ("fractions", "problem"),
    [
        ((0.7, 0.2, 0.2), "sum to 1.1"),
        ((0.0, 0.5, 0.5), "train fraction must be > 0"),
        ((1.0, 0.0, 0.0), r"each must be in \[0, 1\)"),
        ((0.8, -0.1, 0.3), r"each must be in \[0, 1\)"),
        ((0.7, 0.3), "three numbers"),
    ],
)
def test_bad_fractions_say_what_to_fix(fractions, problem):
    with pytest.raises(ConfigError, match=problem) as error:
        split_train_val_test(["a"] * 10, None, fractions=fractions, seed=0)
    assert "fractions=(0.7, 0.15, 0.15)" in str(error.value)


def test_multilabel_lists_and_indicator_give_the_same_split():
    rng = np.random.default_rng(0)
    names = np.array(["rock", "pop", "jazz", "electronic"])
    indicator = rng.random((300, 4)) < [0.5, 0.3, 0.1, 0.05]
    lists = [list(names[row]) for row in indicator]
    releases = np.arange(300) // 3
    from_lists = split_train_val_test(lists, releases, seed=2)
    from_indicator = split_train_val_test(indicator.astype(int), releases, seed=2)
    assert from_lists.equals(from_indicator)
    assert (splits_per_group(from_lists, releases) == 1).all()
    train_share = indicator[(from_lists == "train").to_numpy()].sum(axis=0) / indicator.sum(axis=0)
    assert np.allclose(train_share, 0.7, atol=0.12)  # even the rare label (15 rows)


def test_continuous_labels_must_be_binned():
    with pytest.raises(ConfigError, match="qcut"):
        split_train_val_test(np.linspace(0, 1, 30), None, seed=0)


def test_missing_group_ids_are_rejected():
    with pytest.raises(ConfigError, match="groups has 1 missing"):
        split_train_val_test(["a", "b", "a"], ["x", None, "y"], seed=0)


def test_kfold_keeps_groups_whole_and_balances_classes():
    labels, groups = uneven_data(5, n_groups=300, n_classes=3)
    folds = kfold_assignments(labels, groups, k=5, seed=0)
    assert (splits_per_group(folds, groups) == 1).all()
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    shares = pd.crosstab(labels, folds.to_numpy(), normalize="index")
    assert np.allclose(shares, 0.2, atol=0.05)
    with pytest.raises(ConfigError, match="k=1"):
        kfold_assignments(labels, groups, k=1, seed=0)


def test_audit_group_overlap_finds_a_group_put_in_two_splits():
    labels, groups = uneven_data(0)
    split = split_train_val_test(labels, groups, seed=0)
    sizes = pd.Series(groups).value_counts()
    big = sizes.index[0]  # a group with several rows
    row = np.flatnonzero(groups == big)[0]
    moved = split.copy()
    moved.iloc[row] = "test" if split.iloc[row] != "test" else "train"
    assert audit_group_overlap(moved, groups) == [big]


def test_validate_split_rejects_unknown_values_and_maps_aliases():
    assert list(validate_split(pd.Series(["train", "valid", "test"]))) == ["train", "validation", "test"]
    with pytest.raises(ConfigError, match="holdout"):
        validate_split(pd.Series(["train", "holdout"]))


def test_load_split_csv(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("id,split\nr1,train\nr2,valid\nr3,test\n")
    split = load_split_file(path, ["r3", "r1", "r2", "r4"])
    assert split.to_dict() == {"r3": "test", "r1": "train", "r2": "validation"}  # r4: not listed, left out
    assert split.dtype == SPLIT_DTYPE


def write_split_lists(folder, lists: dict[str, list[str]]) -> None:
    folder.mkdir()
    for name, file_name in SPLIT_LIST_FILES.items():
        (folder / file_name).write_text("\n".join(lists[name]) + "\n")


def test_load_the_three_text_file_folder(tmp_path):
    folder = tmp_path / "gtzan_filtered"
    write_split_lists(
        folder,
        {
            "train": ["blues/blues.00000.wav", "jazz/jazz.00001.wav"],
            "validation": ["blues/blues.00001.wav"],
            "test": ["jazz/jazz.00000.wav"],
        },
    )
    ids = ["blues.00000", "genres/blues/blues.00001.au", "jazz.00000", "jazz.00001", "jazz.00054"]
    split = load_split_file(folder, ids)
    assert split.to_dict() == {
        "blues.00000": "train",
        "genres/blues/blues.00001.au": "validation",
        "jazz.00000": "test",
        "jazz.00001": "train",
    }


def test_listed_ids_we_lack_are_an_error_unless_missing_ok(tmp_path):
    path = tmp_path / "split.tsv"
    path.write_text("id\tsplit\nr1\ttrain\nghost1\ttest\nghost2\ttest\n")
    with pytest.raises(ConfigError, match=r"2 listed ids.*ghost1"):
        load_split_file(path, ["r1", "r2"])
    assert load_split_file(path, ["r1", "r2"], missing_ok=True).to_dict() == {"r1": "train"}


def test_split_folder_without_its_three_lists_is_an_error(tmp_path):
    (tmp_path / "train_filtered.txt").write_text("blues/blues.00000.wav\n")
    with pytest.raises(ConfigError, match="valid_filtered.txt"):
        load_split_file(tmp_path, ["blues.00000"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_split_file(tmp_path / "nope.csv", ["blues.00000"])


def test_split_of_the_real_gtzan_sample(realdata):
    clips = sorted((realdata / "gtzan" / "genres").glob("*/*.wav"))
    ids = [f"{clip.parent.name}/{clip.name}" for clip in clips]
    genres = [clip.parent.name for clip in clips]
    split = split_train_val_test(pd.Series(genres, index=ids), None, seed=0)
    counts = pd.crosstab(np.array(genres), split.to_numpy())
    assert (counts["train"] >= 4).all() and (counts["validation"] >= 1).all() and (counts["test"] >= 1).all()
