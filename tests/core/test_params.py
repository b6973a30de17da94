"""The parameter vocabulary: old names keep working for one release, with a message; a
split a stage needs that would be empty fails at parameter checking, naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows import params_model, training_flows
from mirflow.cli import build_parser, params_from_args
from mirflow.core.errors import ConfigError
from mirflow.pipelines.acousticbrainz_genre.params import AcousticBrainzParams
from mirflow.pipelines.gtzan.params import GtzanParams
from mirflow.pipelines.msd_hotness.params import MsdHotnessParams


def test_k_folds_is_accepted_as_folds_with_a_deprecation_message():
    with pytest.warns(FutureWarning, match=r"`k_folds` \(--k-folds\) is renamed `folds`"):
        assert GtzanParams(k_folds=3).folds == 3
    assert GtzanParams(folds=4).folds == 4


def test_msd_old_stage_names_are_accepted_in_force():
    with pytest.warns(FutureWarning, match="stage `features` is renamed `design`"):
        assert MsdHotnessParams(force=["features", "etl", "train"]).force == ["design", "extract", "train"]


def test_the_cli_accepts_the_old_options():
    args = build_parser().parse_args(["run", "msd_hotness", "--k-folds", "3", "--force", "features"])
    with pytest.warns(FutureWarning):
        params = params_from_args(params_model("msd_hotness"), args)
    assert (params.folds, params.force) == (3, ["design"])


def test_every_flow_shares_the_option_vocabulary():
    for name in training_flows():
        fields = params_model(name).model_fields
        assert {"seed", "force", "data_dir", "store"} <= set(fields)
        assert "k_folds" not in fields and ("folds" in fields or "split" not in fields)
    assert MsdHotnessParams().split == "random"
    assert GtzanParams().split is None  # chosen from the folder: filtered on the standard GTZAN, else random


@pytest.mark.parametrize("model", [GtzanParams, MsdHotnessParams])
def test_fractions_without_validation_fail_at_parameter_checking(model):
    with pytest.raises(ValidationError, match=r"fractions \(0\.85, 0\.0, 0\.15\) leave no validation rows"):
        model(fractions=(0.85, 0.0, 0.15))
    assert model(fractions=(0.85, 0.0, 0.15), split_file="split.csv").split_file == "split.csv"  # the file decides


def test_acousticbrainz_needs_a_validation_fraction():
    with pytest.raises(ValidationError, match="validation_fraction"):
        AcousticBrainzParams(validation_fraction=0.0)


@pytest.mark.parametrize("model", [GtzanParams, MsdHotnessParams])
def test_a_split_file_without_validation_rows_fails_at_check_inputs(model, tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("id,split\na,train\nb,test\n")
    with pytest.raises(ConfigError, match=r"split_file .*split\.csv leaves no validation rows"):
        model(split_file=str(path)).check_inputs()
    path.write_text("id,split\na,train\nb,valid\n")
    model(split_file=str(path)).check_inputs()
