"""Open and close a flow run: its context, its run folder, its report and artifacts."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from mirflow import runs
from mirflow.core.cluster import DaskPool
from mirflow.core.store import ArtifactStore
from mirflow.runs import report
from tasks.common import UNCACHED, task
from tasks.runtime import RunContext, run_logger


@task(**UNCACHED)
def start_run(flow: str, params: BaseModel, explain: bool = False) -> RunContext:
    ctx = RunContext(
        run_id=runs.new_run_id(flow),
        flow=flow,
        store=ArtifactStore(params.store),
        pool=DaskPool(params.dask_address, params.n_workers),
        params=params,
        explain=explain,
    )
    run_logger().info("run %s: artifacts in %s", ctx.run_id, params.store)
    if not explain:  # last: ctx.close releases the lease, and only a returned ctx is closed
        ctx.store.take_lease(ctx.run_id)
    return ctx


@task(**UNCACHED)
def finish_run(ctx: RunContext, outputs: runs.RunOutputs, selection: runs.Selection = runs.Selection()) -> dict:
    """Write the run folder (report, metrics, manifest, files) and the Prefect table and
    markdown artifacts; with ``explain``, only say which stages would re-run and why."""
    logger = run_logger()
    if ctx.explain:
        text = report.explain_plan(ctx.stages, runs.latest_manifest(ctx.store, ctx.flow, before=ctx.run_id))
        logger.info("what would re-run:\n%s", text)
        return {"explain": text, "stages": ctx.stages}
    if ctx.generated_data:
        outputs.notes.insert(0, report.GENERATED_DATA_WARNING)
    summary = runs.write_run(ctx.store, ctx.run_id, ctx.flow, ctx.params, ctx.stages, outputs, selection)
    key = ctx.flow.replace("_", "-")
    create_table_artifact(summary["rows"], key=f"{key}-metrics", description=f"{ctx.flow} metrics, run {ctx.run_id}")
    create_markdown_artifact(summary["report_markdown"], key=f"{key}-report", description=f"{ctx.flow} report, run {ctx.run_id}")
    logger.info("report: %s", summary["report_path"])
    return {k: v for k, v in summary.items() if k != "report_markdown"}
