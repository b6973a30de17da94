"""vocal_genre's run plan and ablation table (mirflow.pipelines.vocal_genre.variants, evaluate)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mirflow.pipelines.vocal_genre.evaluate import ablation_rows, scores, song_level
from mirflow.pipelines.vocal_genre.params import VocalGenreParams
from mirflow.pipelines.vocal_genre.variants import Variant, plan_variants


def test_the_plan_trains_each_variant_once():
    params = VocalGenreParams(models=["resnet20", "cnn"], ablation=True, pretrained="run", unfreeze=["0", "all"])
    planned = plan_variants(params)
    assert len(planned) == len(set(planned)) == 3 * 2 * 2 + 2 * 2  # the main variants are in the grid
    assert [v.name(params) for v in planned[:2]] == ["resnet20", "cnn"]
    assert {v.name(params) for v in planned} >= {"cnn-mix-noaug", "resnet20-unfreeze-all"}
    assert plan_variants(VocalGenreParams(models=["cnn"])) == [Variant("cnn", "vocals", True)]


def _predictions(right: float, seed: int) -> pd.DataFrame:
    """Two slices for each of 20 songs, the first ``right`` share of songs predicted right."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(20) % 2, 2)
    correct = np.repeat(np.arange(20) < 20 * right, 2)
    guess = np.where(correct, labels, 1 - labels)
    frame = pd.DataFrame({"row_id": [f"s{i // 2}#{i % 2}" for i in range(40)], "song": [f"s{i // 2}" for i in range(40)],
                          "label": np.array(["a", "b"])[labels], "fold": np.repeat(np.arange(20) % 2, 2), "round": 0})
    sharp = rng.uniform(0.6, 0.9, 40)
    frame["p_a"] = np.where(guess == 0, sharp, 1 - sharp)
    frame["p_b"] = 1 - frame["p_a"]
    frame["round"] = frame["fold"]
    return frame


def test_song_scores_average_the_slices_and_the_ablation_table_has_every_cell():
    frame = _predictions(0.75, 0)
    assert len(song_level(frame)) == 20
    assert scores(frame)["song_accuracy"] == 0.75
    params = VocalGenreParams(models=["resnet20", "cnn"], ablation=True)
    variants = plan_variants(params)
    predictions = {v: _predictions(0.9 if v.stem == "vocals" else 0.5, i) for i, v in enumerate(variants)}
    rows = ablation_rows(params, {v: scores(p) for v, p in predictions.items()}, predictions)
    assert [(r["stem"], r["augmentation"]) for r in rows] == [
        (stem, aug) for stem in ("vocals", "accompaniment", "mix") for aug in ("on", "off")]
    assert rows[0] == {"stem": "vocals", "augmentation": "on", "resnet20": 0.9, "cnn": 0.9, "ensemble (sum)": 0.9}
    assert rows[-1]["cnn"] == 0.5
