"""Hand committed jobs to the worker queue (Celery guide: enqueue only after the commit).

Services return the jobs they created; whoever owns the unit of work registers
:func:`enqueue_job` (and :func:`schedule_seal_check`) on an :class:`AfterCommit` collector and runs
it once the transaction has committed. If the transaction rolls back, nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from app import broker
from app.db.models import Job
from app.db.session import session_scope

__all__ = ["TASK_FOR_KIND", "AfterCommit", "enqueue_job", "schedule_seal_check"]

log = logging.getLogger(__name__)

TASK_FOR_KIND = {
    "train": broker.TASK_TRAIN,
    "unlearn": broker.TASK_UNLEARN_BATCH,
    "retrain": broker.TASK_RETRAIN,
}

SEAL_CHECK_SLACK_S = 0.5
"""Added to a seal check's countdown so the oldest request is surely past ``max_wait_seconds``."""


class AfterCommit:
    """Callbacks to run after the unit of work commits, in the order they were added.

    A failing callback is logged and does not stop the others: the rows are committed already,
    and a job left ``queued`` without a message is the reaper's to re-enqueue.
    """

    def __init__(self) -> None:
        self._callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def add(self, callback: Callable[..., Any], *args: Any) -> None:
        self._callbacks.append((callback, args))

    def enqueue(self, jobs: list[Job] | tuple[Job, ...]) -> None:
        """Enqueue each job after the commit."""
        for job in jobs:
            self.add(enqueue_job, job)

    def run(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback, args in callbacks:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 - logged; see the class docstring
                name = getattr(callback, "__name__", repr(callback))
                log.exception("after-commit callback %s failed", name)

    def discard(self) -> None:
        self._callbacks.clear()


def enqueue_job(job: Job) -> str:
    """Send a committed job's task (its id is the only argument) and record the Celery task id.

    Returns:
        The Celery task id.
    """
    job_id, kind = job.id, job.kind
    task_id = broker.enqueue(TASK_FOR_KIND[kind], job_id)
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.celery_task_id.is_(None))
            .values(celery_task_id=task_id)
        )
    return task_id


def schedule_seal_check(model_id: str, countdown: float) -> str:
    """Ask the worker to run ``seal_if_due`` for the model in ``countdown`` seconds."""
    delay_s = max(0.0, countdown) + SEAL_CHECK_SLACK_S
    return broker.enqueue(broker.TASK_SEAL_DUE, model_id, countdown=delay_s)
