"""A flow run's heartbeat, sent by mirflow for flows called in this process.

Prefect sends "prefect.flow-run.heartbeat" events while a flow runs (its zombie-run
detection watches them) from a thread that sleeps in whole seconds, and the flow engine
joins that thread when the flow ends: every run waited for the next whole second from its
start, 0.8 s of a 1.2 s unchanged re-run. ``PipelineFlow.__call__`` turns Prefect's thread
off for its run and opens a ``FlowRunHeartbeat``, whose thread sends the same event every
``heartbeat_frequency`` seconds and stops at once. It learns the flow run from the run's
first task (``StageTask``), since the flow run exists only inside Prefect's engine. Runs
that Prefect's engine starts itself (deployments) keep Prefect's own heartbeat.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import prefect
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.events.related import tags_as_related_resources

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
_OPEN: contextvars.ContextVar[FlowRunHeartbeat | None] = contextvars.ContextVar("mirflow_flow_heartbeat", default=None)
logger = logging.getLogger(__name__)


class FlowRunHeartbeat:
    def __init__(self, seconds: int):
        self.seconds = seconds
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, context: FlowRunContext) -> None:
        """Start beating for ``context``'s flow run, once; later calls do nothing."""
        with self._lock:
            if self._thread is not None or self._stopped.is_set():
                return
            run = context.flow_run
            resource = {
                "prefect.resource.id": f"prefect.flow-run.{run.id}",
                "prefect.resource.name": run.name or "",
                "prefect.version": prefect.__version__,
            }
            related = [{"prefect.resource.id": f"prefect.flow.{run.flow_id}", "prefect.resource.role": "flow",
                        "prefect.resource.name": context.flow.name if context.flow else ""}]
            if run.deployment_id:
                related.append({"prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                                "prefect.resource.role": "deployment"})
            related += [dict(tag) for tag in tags_as_related_resources(set(run.tags or ()))]
            # The thread sees this context's settings (the API the run talks to), as Prefect's does.
            self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._beat, resource, related),
                                            name="mirflow-flow-run-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self, resource: dict[str, str], related: list[dict[str, str]]) -> None:
        while True:
            try:
                emit_event(event=HEARTBEAT_EVENT, resource=resource, related=related)
            except Exception:  # a missed beat is not the run's failure (Prefect logs it the same way)
                logger.debug("Failed to emit a flow run heartbeat", exc_info=True)
            if self._stopped.wait(self.seconds):
                return

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()


@contextmanager
def flow_run_heartbeat(seconds: int) -> Iterator[FlowRunHeartbeat]:
    """A heartbeat for the flow run made inside this block, stopped when the block ends."""
    heartbeat = FlowRunHeartbeat(seconds)
    token = _OPEN.set(heartbeat)
    try:
        yield heartbeat
    finally:
        _OPEN.reset(token)
        heartbeat.stop()


def start_flow_run_heartbeat() -> None:
    """Called by every task call: starts the open heartbeat for the flow run it runs in."""
    heartbeat = _OPEN.get()
    if heartbeat is not None and not heartbeat.started:
        context = FlowRunContext.get()
        if context is not None and context.flow_run is not None:
            heartbeat.start(context)
