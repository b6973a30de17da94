"""Batch scoring with a finished kkbox_relisten run: a KKBOX test.csv -> id,target
(the competition's submission format), so it can be triggered from the Prefect UI."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from flows.common import pipeline_flow
from mirflow.pipelines.kkbox_relisten.params import KkboxScoreParams
from tasks.kkbox_relisten import score_rows


@pipeline_flow("kkbox_score")
def kkbox_score(params: KkboxScoreParams, explain: bool = False) -> dict:
    """Score `params.input_csv` with the run `params.run`; `explain`: scoring caches nothing."""
    params.check_inputs()
    if explain:
        return {"explain": "kkbox_score caches nothing: every run scores the input afresh"}
    summary = score_rows(params)
    create_markdown_artifact(
        f"Scored {summary['rows']} rows of `{params.input_csv}` with {summary['model']} of run `{summary['run_id']}` "
        f"into `{summary['out']}`; unknown users {summary['unknown_msno']}, unknown songs {summary['unknown_song_id']}.",
        key="kkbox-score", description=f"kkbox_score of run {summary['run_id']}",
    )
    return summary
