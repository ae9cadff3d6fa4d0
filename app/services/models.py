"""Create and read models; queue their training and exact retrains.

A model and its ``train`` job are written in one transaction; the caller enqueues the job only
after that transaction commits (Celery guide: enqueue after commit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import Dataset, DeletionRequest, Job, Model, utcnow
from app.errors import InvalidInput, NotFound, StateConflict
from app.schemas.models import ModelCreate
from app.services.architectures import check_architecture_name, check_input_shape
from app.services.pagination import after, decode_cursor, encode_cursor

__all__ = [
    "create_model",
    "get_model",
    "list_models",
    "request_retrain",
    "train_job_ids",
]

ACTIVE_JOB_STATUSES = ("queued", "running")


def create_model(session: Session, spec: ModelCreate) -> tuple[Model, Job]:
    """Create a model in status ``training`` and its queued ``train`` job.

    Returns:
        ``(model, job)``; enqueue ``job`` after the commit.

    Raises:
        InvalidInput: ``dataset_id`` names no dataset, or ``architecture`` is neither built in nor
            registered (the field is named in the error, with the choices), or is a
            convolutional built-in on a dataset without image samples.
    """
    check_architecture_name(spec.architecture)
    dataset = session.get(Dataset, spec.dataset_id)
    if dataset is None:
        raise InvalidInput(
            f"dataset_id {spec.dataset_id!r} names no registered dataset",
            field="dataset_id",
        )
    check_input_shape(spec.architecture, dataset.input_shape)
    model = Model(
        name=spec.name,
        dataset_id=spec.dataset_id,
        architecture=spec.architecture,
        training=spec.training.model_dump(mode="json"),
        certification=spec.certification.model_dump(mode="json"),
        batching=spec.batching.model_dump(mode="json"),
        budget=spec.budget.model_dump(mode="json"),
        status="training",
    )
    session.add(model)
    session.flush()
    job = Job(model_id=model.id, kind="train", status="queued")
    session.add(job)
    session.flush()
    return model, job


def get_model(session: Session, model_id: str) -> Model:
    """Raises: NotFound."""
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"no model {model_id!r}", model_id=model_id)
    return model


def list_models(
    session: Session, *, limit: int | None = None, cursor: str | None = None
) -> tuple[Sequence[Model], str | None]:
    """Models oldest first (``created_at``, then ``id``): all of them, or a page of ``limit`` after
    ``cursor``.

    Returns:
        ``(models, next_cursor)``; ``next_cursor`` is ``None`` on the last page.

    Raises:
        InvalidInput: A cursor this service did not write.
    """
    query = select(Model).order_by(Model.created_at, Model.id)
    if cursor is not None:
        query = query.where(after(Model.created_at, Model.id, decode_cursor(cursor)))
    if limit is None:
        return session.scalars(query).all(), None
    rows = session.scalars(query.limit(limit + 1)).all()
    items = rows[:limit]
    more = len(rows) > limit
    return items, encode_cursor(items[-1].created_at, items[-1].id) if more else None


def train_job_ids(session: Session, model_ids: Iterable[str]) -> dict[str, str]:
    """The newest ``train`` job of each model, as ``{model_id: job_id}``."""
    ids = list(model_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Job.model_id, Job.id)
        .where(Job.model_id.in_(ids), Job.kind == "train")
        .order_by(Job.created_at)
    ).all()
    return {model_id: job_id for model_id, job_id in rows}


def request_retrain(session: Session, model_id: str, *, now: datetime | None = None) -> Job:
    """Queue an exact retrain from scratch on the current retain set (a ``retrain`` job).

    The job absorbs every ``pending`` deletion request of the model (they become ``batched`` with
    this job), so the retrained version forgets them too. It may queue behind unlearn jobs.

    Raises:
        NotFound: Unknown model.
        StateConflict: The model is not ``ready``, or a retrain is already queued or running.
    """
    get_model(session, model_id)
    # Lock the model's row first (a no-op UPDATE): concurrent retrain requests then queue here
    # on PostgreSQL (SQLite already serializes writers), so only one of them passes the check.
    session.execute(update(Model).where(Model.id == model_id).values(status=Model.status))
    model = get_model(session, model_id)
    session.refresh(model)
    if model.status != "ready":
        raise StateConflict(
            f"model {model_id!r} is {model.status}; only a ready model can be retrained",
            model_status=model.status,
        )
    active = session.scalar(
        select(Job.id).where(
            Job.model_id == model_id,
            Job.kind == "retrain",
            Job.status.in_(ACTIVE_JOB_STATUSES),
        )
    )
    if active is not None:
        raise StateConflict(
            f"a retrain of model {model_id!r} is already queued or running", job_id=active
        )
    job = Job(model_id=model_id, kind="retrain", status="queued")
    session.add(job)
    session.flush()
    session.execute(
        update(DeletionRequest)
        .where(DeletionRequest.model_id == model_id, DeletionRequest.status == "pending")
        .values(status="batched", job_id=job.id, updated_at=now or utcnow())
    )
    return job
