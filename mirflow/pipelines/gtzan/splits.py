"""Which split a GTZAN run uses, and what its report says about it.

The artist-filtered split (Kereliuk, Sturm & Larsen 2015) is the default on the
standard 1,000-clip GTZAN: a random split, even one keeping duplicates together, puts
the same artist in training and test (Sturm 2013), which inflates accuracy. Other
collections have no such lists, so a random group split stays their default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from mirflow.core.errors import ConfigError
from mirflow.datasets import gtzan


@dataclass(frozen=True)
class SplitChoice:
    name: str  # "filtered", "random" or "file"
    listed: Mapping[str, str] | None  # clip_id -> split name, for "filtered"
    standard_copy: bool  # the folder is the standard 1,000-clip GTZAN


def choose_split(split: str | None, split_file: str | None, fingerprint: str, clips: pd.DataFrame) -> SplitChoice:
    """``split`` as given (None: filtered on the standard GTZAN, else random), or the
    split file. ``clips`` as ``gtzan.discover`` lists them; with ``fingerprint ==
    "content"`` the standard copy is recognised by checksums too."""
    if split_file:
        return SplitChoice("file", None, False)
    standard = split != "random" and gtzan.is_standard_copy(clips, verify_checksums=fingerprint == "content")
    if split == "filtered" or (split is None and standard):
        listed = gtzan.filtered_split()
        if not set(clips["clip_id"]) & listed.keys():
            raise ConfigError("split filtered: none of the clips is in the artist-filtered lists "
                              "(GTZAN names such as blues.00029); use --split random")
        return SplitChoice("filtered", dict(listed), standard)
    return SplitChoice("random", None, standard)


def split_note(choice: SplitChoice, summary: dict) -> str:
    """The report's line on the split: its name, its counts, and what it does not control."""
    rows = ", ".join(f"{name} {n}" for name, n in summary["rows"].items())
    if choice.name == "filtered":
        return (f"Split: **filtered**, the artist-filtered GTZAN split (Kereliuk, Sturm & Larsen 2015): "
                f"{sum(summary['rows'].values())} rows of listed clips where the lists put them ({rows}); "
                f"{summary['excluded']} clips outside the lists excluded.")
    if choice.name == "file":
        return f"Split: **file**, predefined by --split-file ({rows}; {summary['excluded']} clips not in the file excluded)."
    return (f"Split: **random**, seeded and stratified, keeping duplicate recordings together ({rows}). "
            "Artist leakage is not controlled: the same artist may be in training and test, which inflates "
            "accuracy (Sturm 2013)" + ("; on this standard GTZAN, --split filtered controls it." if choice.standard_copy else "."))
