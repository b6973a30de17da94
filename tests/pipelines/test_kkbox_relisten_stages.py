"""KKBOX re-listen stages without Prefect: the report's derived fields, join coverage
and its failure, the chronological split and cold start, encoders with an unknown
index, the leakage audit catching statistics fitted on all rows, input checks of
scoring and of the HTTP endpoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mirflow.core.errors import DataError, LeakageError
from mirflow.core.materialize import materialize
from mirflow.core.store import ArtifactRef, ArtifactStore
from mirflow.datasets import kkbox
from mirflow.pipelines.kkbox_relisten import features as kf
from mirflow.pipelines.kkbox_relisten import relisten
from mirflow.pipelines.kkbox_relisten.scoring import read_chunks
from mirflow.pipelines.kkbox_relisten.serve import Limits, RequestError, parse_rows


def joined_row(**overrides) -> dict:
    row = {
        "msno": "u1", "song_id": "s1", "source_system_tab": "radio", "source_screen_name": None, "source_type": "radio",
        "genre_ids": np.array(["465", "958", "1609"]), "artist_name": np.array(["Ann"]), "composer": np.array(["Bo", "Ann"]),
        "lyricist": None, "language": 3.0, "song_length": 200_000, "isrc": "TWA530887303", "city": 5, "bd": 0,
        "gender": None, "registered_via": 7, "registration_init_time": pd.Timestamp("2017-01-01"),
        "expiration_date": pd.Timestamp("2017-01-31"),
    }
    return {**row, **overrides}


def test_derive_computes_the_reports_fields():
    derived = kf.derive(pd.DataFrame([joined_row(), joined_row(bd=1051, isrc="USAB19912345", artist_name=np.array(["A", "B", "C"])),
                                      joined_row(bd=25, isrc=None, genre_ids=None)]))
    first, second, third = derived.to_dict("records")
    assert (first["genre1"], first["genre2"], first["genre_more"]) == ("465", "958", 1.0)
    assert (first["artist1"], first["artist2"], first["artist_more"]) == ("Ann", "-1", 0.0)
    assert first["artist_is_composer"] == 1.0 and first["artist_is_lyricist"] == 0.0
    assert (first["isrc_country"], first["isrc_year"], second["isrc_year"]) == ("TW", 2008.0, 1999.0)
    assert first["membership_days"] == 30.0 and first["language"] == "3" and first["source_screen_name"] == kf.MISSING
    assert np.isnan(first["age"]) and np.isnan(second["age"]) and third["age"] == 25.0  # bd 0 and 1051 are not ages
    assert second["artist_more"] == 1.0 and third["genre1"] == kf.MISSING and np.isnan(third["isrc_year"])


def reference_fields(row: dict) -> dict:
    """The report's fields of one joined row, written per row as plainly as possible:
    the oracle the column-wise ``kf.derive`` must equal."""
    def parts(value) -> list[str]:
        return [str(p) for p in value if str(p)] if isinstance(value, (list, np.ndarray)) else []

    def text(value) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or value == "":
            return kf.MISSING
        return str(int(value)) if isinstance(value, (int, float, np.number)) else str(value)

    def nth(values: list[str], n: int) -> str:
        return values[n] if len(values) > n else kf.MISSING

    genres, artists, composers, lyricists = (parts(row[f]) for f in ("genre_ids", "artist_name", "composer", "lyricist"))
    isrc = row["isrc"] if isinstance(row["isrc"], str) else ""
    year = pd.to_numeric(isrc[5:7], errors="coerce") if isrc else np.nan
    bd = float(row["bd"]) if text(row["bd"]) != kf.MISSING else np.nan
    fields = {f: text(row[f]) for f in (*kf.ROW_FIELDS, "language", "city", "gender", "registered_via")}
    return {**fields, "genre1": nth(genres, 0), "genre2": nth(genres, 1), "artist1": nth(artists, 0), "artist2": nth(artists, 1),
            "composer1": nth(composers, 0), "lyricist1": nth(lyricists, 0), "isrc_country": text(isrc[:2]),
            "song_length": float(row["song_length"]) if text(row["song_length"]) != kf.MISSING else np.nan,
            "isrc_year": float(1900 + (year if year > 17 else year + 100)) if not np.isnan(year) else np.nan,
            "membership_days": float((row["expiration_date"] - row["registration_init_time"]).days)
            if not pd.isna(row["expiration_date"]) and not pd.isna(row["registration_init_time"]) else np.nan,
            "age": bd if 10 <= bd <= 80 else np.nan, "genre_more": float(len(genres) > 2), "artist_more": float(len(artists) > 2),
            "artist_is_composer": float(bool(artists) and artists[0] in composers),
            "artist_is_lyricist": float(bool(artists) and artists[0] in lyricists)}


@pytest.mark.parametrize("source", ["demo", "realdata"])
def test_derive_equals_the_per_row_definition(source, tmp_path, request):
    """Column-wise (Arrow) derive gives what the per-row definition gives, value for value,
    on generated rows and on the real heads (where 86 % of rows join no song)."""
    if source == "demo":
        folder = tmp_path / "demo"
        kkbox.synthesize(folder, 2000, seed=5)
    else:
        folder = request.getfixturevalue("realdata") / "kkbox"
    joined = kf.join(kkbox.read_file(folder / "train.csv"), relisten.read_sides(folder))
    derived = kf.derive(joined)
    expected = pd.DataFrame([reference_fields(row) for row in joined.to_dict("records")], index=joined.index)
    assert sorted(derived.columns) == sorted(expected.columns)
    expected = expected[derived.columns]
    categorical = {f: object for f in kf.CATEGORICAL}
    pd.testing.assert_frame_equal(derived.astype(categorical), expected.astype(categorical), check_dtype=False)


def test_low_join_coverage_fails_naming_the_table(tmp_path):
    kkbox.synthesize(tmp_path / "data", 300, seed=0)
    songs = pd.read_csv(tmp_path / "data" / "songs.csv")
    songs.assign(song_id=songs["song_id"] + "x").to_csv(tmp_path / "data" / "songs.csv", index=False)
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(DataError, match=r"songs.csv 0/300 \(0.0%\)"):
        materialize(store, ArtifactRef("consolidate", "k"), {}, relisten.write_consolidated, (str(tmp_path / "data"), 0.05))
    summary = materialize(store, ArtifactRef("consolidate", "k"), {}, relisten.write_consolidated, (str(tmp_path / "data"), 0.0))["summary"]
    assert summary["coverage"]["songs"]["matched"] == 0 and summary["coverage"]["members"]["share"] == 1.0


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """consolidate, chronological split and transform of a small generated set."""
    root = tmp_path_factory.mktemp("kkbox_stages")
    kkbox.synthesize(root / "data", 1000, seed=3)
    store = ArtifactStore(str(root / "store"))
    joined, split, encoded = ArtifactRef("consolidate", "j"), ArtifactRef("split", "s"), ArtifactRef("transform", "t")
    materialize(store, joined, {}, relisten.write_consolidated, (str(root / "data"), 0.05))
    materialize(store, split, {}, relisten.write_split, (store, joined, "chronological", (0.8, 0.1, 0.1), 0))
    materialize(store, encoded, {}, relisten.write_transform, (store, joined, split, 2))
    return store, joined, split, encoded


def test_chronological_split_puts_the_latest_rows_last_and_marks_cold_start(stages):
    store, joined, split, _ = stages
    table = relisten.read_split(store, split)
    assert table["split"].tolist() == ["train"] * 800 + ["validation"] * 100 + ["test"] * 100
    rows = store.read_parquet(joined, relisten.JOINED, columns=["row_id", "song_id"]).to_pandas()
    trained = set(rows["song_id"][:800])
    assert table["new_song"].tolist() == [s not in trained for s in rows["song_id"]]


def test_encoders_send_unseen_and_rare_values_to_the_unknown_index(stages):
    store, joined, split, encoded = stages
    transform = relisten.read_transform(store, encoded)
    train = kf.derive(store.read_parquet(joined, relisten.JOINED).to_pandas())[:800]
    counts = train["song_id"].value_counts()
    rare, common = counts.index[counts == 1][0], counts.index[counts >= 2][0]
    derived = train[train["song_id"].isin([rare, common])].drop_duplicates("song_id").astype({"source_type": object})
    derived.loc[derived.index[0], "source_type"] = "never-seen"
    codes = pd.DataFrame(transform.codes(derived), columns=kf.CATEGORICAL, index=derived["song_id"])
    assert codes.loc[rare, "song_id"] == kf.UNKNOWN and codes.loc[common, "song_id"] != kf.UNKNOWN
    assert codes["source_type"].iloc[0] == kf.UNKNOWN


def test_audit_passes_a_clean_transform_and_catches_one_fitted_on_all_rows(stages, monkeypatch, tmp_path):
    store, joined, split, encoded = stages
    assert relisten.audit_leakage(store, joined, split, encoded, 2)["scaler_rows"] == 800
    real_fit = kf.fit_transform
    monkeypatch.setattr(kf, "fit_transform", lambda derived, split, min_count: real_fit(derived, split.map(lambda _: "train"), min_count))
    leaky = ArtifactRef("transform", "leaky")
    materialize(store, leaky, {}, relisten.write_transform, (store, joined, split, 2))
    with pytest.raises(LeakageError) as error:
        relisten.audit_leakage(store, joined, split, leaky, 2)
    message = str(error.value)
    assert "fill value of song_length differs" in message and "scaler fitted on 1000 rows" in message
    # An encoder that knows a value only validation/test rows hold: e.g. the last row's song.
    last_song = store.read_parquet(joined, relisten.JOINED, columns=["song_id"]).to_pandas()["song_id"].iloc[-1]
    saved = relisten.read_transform(store, encoded)
    vocabularies = {**saved.vocabularies, "song_id": sorted({*saved.vocabularies["song_id"], last_song + "-test-only"})}
    widened = ArtifactRef("transform", "widened")
    with store.writing(widened) as writer:
        writer.write_json(relisten.TRANSFORM, kf.Transform(vocabularies, saved.fill, saved.scaler).to_dict())
    with pytest.raises(LeakageError, match=r"encoder of song_id differs .*not from training: \['.*-test-only'\]"):
        relisten.audit_leakage(store, joined, split, widened, 2)


def test_scoring_input_errors_name_the_file_line_and_column(tmp_path):
    bad_id = tmp_path / "test.csv"
    bad_id.write_text("id,msno,song_id,source_system_tab,source_screen_name,source_type\n0,u,s,a,b,c\nx1,u,s,a,b,c\n,,,,,\n")
    with pytest.raises(DataError, match=r"line 3: id 'x1' is not an integer"):
        list(read_chunks(bad_id, 10))
    no_song = tmp_path / "no_song.csv"
    no_song.write_text("id,msno\n0,u\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['song_id'"):
        list(read_chunks(no_song, 10))
    good = tmp_path / "good.csv"
    good.write_text("id,msno,song_id,source_system_tab,source_screen_name,source_type\n" + "".join(f"{i},u,s,,,\n" for i in range(5)) + ",,,,,\n")
    assert [len(c) for c in read_chunks(good, 2)] == [2, 2, 1]  # the blank row is dropped


def test_endpoint_input_checks_name_row_and_field():
    row = {"msno": "u", "song_id": "s", "source_system_tab": None, "source_screen_name": "x", "source_type": "y"}
    assert parse_rows(b'{"rows": [%s]}' % pd.Series(row).to_json().encode(), Limits())["source_system_tab"] == [""]
    cases = {b'{"rows": [{"msno": "u"}]}': "rows[0].song_id: missing", b'{"rows": 3}': '{"rows"', b"[": "not JSON",
             b'{"rows": [{"msno": "u", "song_id": "s", "source_type": 5}]}': "rows[0].source_type: must be a string",
             b'{"rows": [{"msno": "u", "song_id": "s"}, {"song_id": ""}, 4]}': "rows[1].msno: missing",  # the first, row by row
             b'{"rows": [{"msno": "u", "song_id": "s"}, 4]}': "rows[1]: not an object"}
    for body, detail in cases.items():
        with pytest.raises(RequestError, match=re_escape(detail)) as error:
            parse_rows(body, Limits())
        assert error.value.status == 422
    with pytest.raises(RequestError) as error:
        parse_rows(b'{"rows": [{}, {}, {}]}', Limits(max_rows=2))
    assert error.value.status == 413


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_report_loss_leaves_lr_1e_1_stuck_at_chance_while_1e_2_learns(stages):
    """Report 002's network with its sigmoid + BCELoss and Adam: at lr 1e-1 the first
    steps saturate the output, no gradient comes back and validation AUC stays at chance
    (the training loss does not decrease), at 1e-2 it learns; the stable logits loss
    (the code before) recovers from 1e-1: the report's loss is why it fails."""
    from sklearn.metrics import roc_auc_score

    from mirflow.pipelines.kkbox_relisten.evaluate import Model
    from mirflow.pipelines.kkbox_relisten.params import KkboxRelistenParams

    store, _, split, encoded = stages
    validation = relisten.read_split(store, split).query("split == 'validation'")["row_id"]
    table = store.read_parquet(encoded, "table.parquet").to_pandas().set_index("row_id").loc[validation]
    cardinalities = relisten.read_transform(store, encoded).cardinalities
    network = KkboxRelistenParams.model_fields  # the report's architecture: the flow's defaults

    def train(lr: float, loss: str) -> tuple[float, list[float]]:
        config = {"lr": lr, "loss": loss, "seed": 0, "embedding_dim": network["embedding_dim"].default,
                  "hidden": list(network["hidden"].default), "batch_size": 400, "max_epochs": 6, "patience": 6,
                  "min_delta": 0.0, "plateau_patience": 3, "plateau_factor": 0.1}
        ref = ArtifactRef("train", f"{loss}-{lr:g}")
        materialize(store, ref, {}, relisten.write_network, (store, encoded, split, config))
        model = Model("network", store.read_bytes(ref, "model.pt"), cardinalities)
        return roc_auc_score(table["target"], model.predict(table)), [r["train_loss"] for r in store.read_json(ref, relisten.HISTORY)]

    (stuck, stuck_loss), (learns, _), (stable, _) = train(1e-1, "sigmoid"), train(1e-2, "sigmoid"), train(1e-1, "logits")
    assert abs(stuck - 0.5) < 0.02 and min(stuck_loss[1:]) >= stuck_loss[0], (stuck, stuck_loss)
    assert learns > 0.55 and stable > 0.55, (learns, stable)


def test_convergence_figure_keeps_every_rate_readable_next_to_a_saturated_one():
    from mirflow.pipelines.kkbox_relisten.evaluate import convergence_figure

    grid = [{"lr": lr, "diverged": False, "history": [{"epoch": e, "val_loss": loss * e, "val_metric": 0.6}
                                                      for e in (1, 2, 3)]}
            for lr, loss in ((0.1, 1165.8), (0.001, 0.62))]
    loss_axes = convergence_figure(grid).axes[0]
    assert loss_axes.get_yscale() == "log"  # linear: 0.6 next to 3,500 is a flat line at zero
    low, high = loss_axes.get_ylim()
    assert low < 0.62 and high > 3497
