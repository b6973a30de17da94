"""GTZAN's flow parameters (report 001)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mirflow.core.params import RunParams, SplitParams, TrainParams

Stage = Literal["extract", "split", "scale", "train", "evaluate"]


class GtzanParams(RunParams, SplitParams, TrainParams):
    """Genre classification on GTZAN-layout audio (report 001)."""

    force: list[Stage] = Field(default_factory=list, description="Stages to re-run even when their artifacts are cached.")
    split: Literal["random", "filtered"] | None = Field(
        None,
        description="Split strategy: filtered = the artist-filtered GTZAN split (Kereliuk, Sturm & Larsen 2015; clips "
        "outside its lists are excluded), random = seeded, group-aware, stratified (artist leakage not controlled). "
        "Empty: filtered on the standard 1,000-clip GTZAN, random otherwise.",
    )
    segment: str | None = Field(
        None, description="Cut each clip into segments of this length (e.g. '3s'); segments keep their clip's group."
    )
    shard_size: int = Field(64, ge=1, le=100_000, description="Audio files per extraction shard (one Prefect task each).")
    sample_rate: int = Field(22050, ge=8000, le=96000)
    min_duration: float = Field(
        1.0, ge=0.0, le=3600.0,
        description="Quarantine audio files shorter than this many seconds; longer ones below a segment are zero-padded.",
    )
    demo_clips_per_genre: int = Field(
        30, ge=3, le=1000, description="Clips per genre in the generated demo data set (30: ~45 test clips)."
    )

    @field_validator("segment")
    @classmethod
    def _segment_is_duration(cls, value: str | None) -> str | None:
        if value is not None and segment_seconds(value) is None:
            raise ValueError(f"segment {value!r} must be a duration such as '3s' or '2.5s'")
        return value

    @model_validator(mode="after")
    def _one_split_source(self) -> GtzanParams:
        if self.split is not None and self.split_file is not None:
            raise ValueError(f"split {self.split!r} and split_file {self.split_file!r} both name a split; give one")
        return self

    def check_inputs(self) -> None:
        super().check_inputs()
        self.check_split_file()
        if self.data_dir is not None:
            from mirflow.datasets import gtzan

            gtzan.discover(self.data_dir)


def segment_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", value)
    if not match or float(match.group(1)) <= 0:
        return None
    return float(match.group(1))
