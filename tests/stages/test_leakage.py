"""The leakage audit's contract: group problems as lines, one verdict listing them all."""

from __future__ import annotations

import pandas as pd
import pytest

from mirflow.core.errors import LeakageError
from mirflow.stages import leakage


def test_a_group_in_two_splits_is_one_problem_line_and_the_verdict_lists_every_problem():
    split = pd.Series(["train", "train", "validation", "test"], index=["a", "b", "c", "d"])
    assert leakage.group_problems(split, ["s1", "s1", "s2", "s3"]) == []
    problems = leakage.group_problems(split, ["s1", "s2", "s2", "s3"])  # song s2 in train and validation
    assert problems == ["1 groups appear in more than one split, e.g. ['s2']"]
    with pytest.raises(LeakageError, match=r"(?s)leakage audit of x failed:\n- 1 groups .*\n- scaler fitted on 4 rows"):
        leakage.verdict([*problems, "scaler fitted on 4 rows"], 3, 2, " of x")
    assert leakage.verdict([], 3, 2) == {"groups_checked": 3, "scaler_rows": 2}
