"""Hand committed jobs to the worker queue (Celery guide: enqueue only after the commit), and
hand them again when their message was lost.

Services return the jobs they created; whoever owns the unit of work registers
:func:`enqueue_job` (and :func:`schedule_seal_check`) on an :class:`AfterCommit` collector and runs
it once the transaction has committed. If the transaction rolls back, nothing is sent.

A committed job can still lose its message: the publish after the commit fails, the broker
restarts without persistence, someone purges the queue. Each publish records ``jobs.enqueued_at``;
the workers' reaper runs :func:`redispatch_lost_jobs`, which publishes again every job still
``queued`` long after its last publish (issue 4 §2: an accepted request is never lost). A
message for a job that is running or finished is a no-op (``engine.run_job`` claims with a
conditional UPDATE), so a re-send whose original was not lost after all costs one empty claim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update

from app import broker
from app.db.models import Job
from app.db.session import session_scope
from app.settings import get_settings

__all__ = ["REDISPATCH_BACKOFF_CAP", "TASK_FOR_KIND", "AfterCommit", "enqueue_job",
           "mark_published", "redispatch_lost_jobs", "redispatch_wait_s", "schedule_seal_check"]

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
    and a job left ``queued`` without a message is published again by
    :func:`redispatch_lost_jobs` (the workers' reaper) once ``LETHE_JOB_REDISPATCH_SECONDS`` have
    passed since its creation.
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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; Lethe stores UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def enqueue_job(job: Job, *, now: datetime | None = None) -> str:
    """Send a committed job's task (its id is the only argument), then record the Celery task id
    (the first one) and the time of this publish (``enqueued_at``).

    Args:
        job: A committed job (only its ``id`` and ``kind`` are read).
        now: The clock (tests); default now, UTC.

    Returns:
        The Celery task id.

    Raises:
        Whatever the broker raises when it cannot take the message; nothing is recorded then, and
        :func:`redispatch_lost_jobs` publishes the job later.
    """
    job_id, kind = job.id, job.kind
    task_id = broker.enqueue(TASK_FOR_KIND[kind], job_id)
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(celery_task_id=func.coalesce(Job.celery_task_id, task_id),
                    enqueued_at=now or _now())
        )
    return task_id


def mark_published(job_id: str, *, now: datetime | None = None) -> None:
    """Record that a new message of the job was published by someone else (a Celery retry while
    its model is busy), so that :func:`redispatch_lost_jobs` does not add another."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                        .values(enqueued_at=now or _now()))


REDISPATCH_BACKOFF_CAP = 8
"""The wait between consecutive re-sends of one job doubles, up to this many times
``LETHE_JOB_REDISPATCH_SECONDS``: a job that stays queued because the workers are busy (not
because its message was lost) gets a few extra messages, not one every interval."""


def redispatch_wait_s(redispatches: int, base_s: float) -> float:
    """Seconds a queued job waits after its last publish before the reaper publishes it again.

    Args:
        redispatches: Re-sends of this job so far (``jobs.redispatches``), >= 0.
        base_s: ``LETHE_JOB_REDISPATCH_SECONDS``.

    Returns:
        ``base_s * min(2 ** redispatches, REDISPATCH_BACKOFF_CAP)``.
    """
    return base_s * min(2 ** min(redispatches, 16), REDISPATCH_BACKOFF_CAP)


def redispatch_lost_jobs(*, now: datetime | None = None) -> list[str]:
    """Publish again the message of every job still ``queued`` whose last publish
    (``enqueued_at``, or ``created_at`` when its first publish failed) is older than
    :func:`redispatch_wait_s`. Each re-send moves ``enqueued_at`` to ``now`` and counts in
    ``jobs.redispatches`` (the metric ``lethe_job_redispatches_total``).

    Safe to run from several workers at once: a job is taken by a conditional UPDATE on the
    state that was read, so only one reaper sends it; the message goes out after that commit.
    A publish that fails is logged, and retried after the next wait.

    Args:
        now: The clock (tests); default now, UTC.

    Returns:
        The ids of the jobs whose message was published again.
    """
    now = now or _now()
    base_s = get_settings().job_redispatch_seconds
    last_publish = func.coalesce(Job.enqueued_at, Job.created_at)
    taken: list[tuple[str, str]] = []
    with session_scope() as session:
        queued = session.execute(
            select(Job.id, Job.kind, last_publish, Job.redispatches)
            .where(Job.status == "queued", last_publish <= now - timedelta(seconds=base_s))
            .order_by(last_publish)
        ).all()
        for job_id, kind, published_at, count in queued:
            due_before = now - timedelta(seconds=redispatch_wait_s(count, base_s))
            if _utc(published_at) > due_before:
                continue
            won = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued", Job.redispatches == count,
                       last_publish <= due_before)
                .values(enqueued_at=now, redispatches=Job.redispatches + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                taken.append((job_id, kind))
    sent = []
    for job_id, kind in taken:
        log.warning("job %s is still queued long after its message was published; publishing "
                    "it again (a lost message)", job_id)
        try:
            broker.enqueue(TASK_FOR_KIND[kind], job_id)
        except Exception:  # noqa: BLE001 - the next pass retries after the wait
            log.exception("publishing job %s again failed", job_id)
            continue
        sent.append(job_id)
    return sent


def schedule_seal_check(model_id: str, countdown: float) -> str:
    """Ask the worker to run ``seal_if_due`` for the model in ``countdown`` seconds."""
    delay_s = max(0.0, countdown) + SEAL_CHECK_SLACK_S
    return broker.enqueue(broker.TASK_SEAL_DUE, model_id, countdown=delay_s)
