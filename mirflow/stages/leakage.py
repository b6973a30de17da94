"""The leakage audit's one contract. Every pipeline has an ``audit_leakage(...) -> dict``
that re-reads its saved split and fitted artifacts (never what is in memory), collects
every problem as a line of text, with ``group_problems`` for groups and
``scaling.audit_scaler`` for scalers, and ends with ``verdict``: a LeakageError listing
them all, or the summary ``{"groups_checked", "scaler_rows"}``. Its task is never cached."""

from __future__ import annotations

import pandas as pd

from mirflow.core.errors import LeakageError
from mirflow.stages.splits import audit_group_overlap


def group_problems(split: pd.Series, groups) -> list[str]:
    """A group (song, artist, release group) in more than one split, as one problem line."""
    overlap = audit_group_overlap(split, groups)
    return [f"{len(overlap)} groups appear in more than one split, e.g. {overlap[:5]}"] if overlap else []


def verdict(problems: list[str], groups_checked: int, scaler_rows: int, subject: str = "") -> dict:
    """Raise LeakageError listing every problem; else the audit's summary."""
    if problems:
        raise LeakageError(f"leakage audit{subject} failed:\n- " + "\n- ".join(problems))
    return {"groups_checked": int(groups_checked), "scaler_rows": int(scaler_rows)}
