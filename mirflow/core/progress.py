"""Progress reports from inside stage functions, wherever they run.

On a Dask worker a report becomes a scheduler event on ``TOPIC``, which the flow's
``DaskPool`` subscribes to; in the flow process it goes straight to the listeners.
"""

from __future__ import annotations

from collections.abc import Callable

TOPIC = "mirflow-progress"
Listener = Callable[[str, int, int], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def report(task: str, done: int, total: int) -> None:
    """``done`` of ``total`` steps of ``task`` (e.g. epochs of ``train[cnn]``) are finished."""
    try:
        from distributed import get_worker

        get_worker().log_event(TOPIC, {"task": task, "done": done, "total": total})
        return
    except ValueError:  # not on a worker
        pass
    notify(task, done, total)


def notify(task: str, done: int, total: int) -> None:
    for listener in list(_listeners):
        listener(task, done, total)
