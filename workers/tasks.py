"""Thin Celery tasks: take an id, let a service re-read the world, claim and run the job.

Each task is idempotent (STYLE.md, Celery's guide): a job that is already finished, or claimed by
another worker, returns at once; publishing checks the job id so a redelivery never publishes twice.
"""

from __future__ import annotations

from app.broker import TASK_RETRAIN, TASK_SEAL_DUE, TASK_TRAIN, TASK_UNLEARN_BATCH
from workers.celery_app import celery_app


@celery_app.task(name=TASK_TRAIN, acks_late=True)
def train(job_id: str) -> str:
    from app.services import engine

    return engine.run_job(job_id, expected_kind="train")


@celery_app.task(name=TASK_UNLEARN_BATCH, acks_late=True)
def unlearn_batch(job_id: str) -> str:
    from app.services import engine

    return engine.run_job(job_id, expected_kind="unlearn")


@celery_app.task(name=TASK_RETRAIN, acks_late=True)
def retrain(job_id: str) -> str:
    from app.services import engine

    return engine.run_job(job_id, expected_kind="retrain")


@celery_app.task(name=TASK_SEAL_DUE, acks_late=True)
def seal_due(model_id: str) -> str | None:
    """Timer for ``max_wait_seconds``: seal the model's pending requests if they are due."""
    from app.services import engine

    return engine.seal_and_enqueue(model_id)
