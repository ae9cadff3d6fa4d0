"""Thin Celery tasks: take an id, let a service re-read the world, claim and run the job.

Each task is idempotent (STYLE.md, Celery's guide): a job that is already finished, or claimed by
another live worker, returns at once; publishing checks the job id so a redelivery never
publishes twice. A job whose model is held by another job retries a little later.
"""

from __future__ import annotations

from celery import Task

from app.broker import TASK_RETRAIN, TASK_SEAL_DUE, TASK_TRAIN, TASK_UNLEARN_BATCH
from workers.celery_app import celery_app

BUSY_RETRY_S = 5.0


def _run(task: Task, job_id: str, kind: str) -> str:
    from app.services import dispatch, engine

    try:
        return engine.run_job(job_id, expected_kind=kind)
    except engine.ModelBusy as busy:  # one job at a time per model: wait for the other
        retry = task.retry(countdown=BUSY_RETRY_S, max_retries=None, throw=False)
        # The retry is the job's message now: the reaper must not count the job as lost.
        dispatch.mark_published(job_id)
        raise retry from busy


@celery_app.task(bind=True, name=TASK_TRAIN, acks_late=True)
def train(self: Task, job_id: str) -> str:
    return _run(self, job_id, "train")


@celery_app.task(bind=True, name=TASK_UNLEARN_BATCH, acks_late=True)
def unlearn_batch(self: Task, job_id: str) -> str:
    return _run(self, job_id, "unlearn")


@celery_app.task(bind=True, name=TASK_RETRAIN, acks_late=True)
def retrain(self: Task, job_id: str) -> str:
    return _run(self, job_id, "retrain")


@celery_app.task(name=TASK_SEAL_DUE, acks_late=True)
def seal_due(model_id: str) -> str | None:
    """Timer for ``max_wait_seconds``: seal the model's pending requests if they are due."""
    from app.services import engine

    return engine.seal_and_enqueue(model_id)
