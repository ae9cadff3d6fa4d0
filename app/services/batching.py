"""Seal pending deletion requests into one ``unlearn`` job (DESIGN.md, deletion request lifecycle).

A model's pending requests are sealed together when the distinct samples they name that no
version has forgotten yet reach ``batching.max_samples``, or when the oldest of them has waited
``batching.max_wait_seconds``, whichever comes first; or on demand (``force``). Sealing is a
conditional UPDATE (``... WHERE status = 'pending'``), so two sealers racing never put one request
into two jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import DeletionRequest, Job, Model, utcnow
from app.schemas.models import BatchingSpec
from app.services.forgotten import forgotten_versions

__all__ = ["batching_policy", "complete_already_forgotten", "seal_if_due", "seconds_until_due"]


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; Lethe stores UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def batching_policy(model: Model) -> BatchingSpec:
    """The model's batching policy (stored keys this version does not know are ignored)."""
    stored = model.batching or {}
    return BatchingSpec.model_validate(
        {k: v for k, v in stored.items() if k in BatchingSpec.model_fields}
    )


def _pending(session: Session, model_id: str) -> Sequence[DeletionRequest]:
    return session.scalars(
        select(DeletionRequest)
        .where(DeletionRequest.model_id == model_id, DeletionRequest.status == "pending")
        .order_by(DeletionRequest.created_at, DeletionRequest.id)
    ).all()


def complete_already_forgotten(
    session: Session, model_id: str, *, now: datetime | None = None
) -> list[DeletionRequest]:
    """Complete the pending requests whose every sample an earlier version already forgot.

    Each points at the newest version among those that forgot its samples. Returns them.
    """
    pending = _pending(session, model_id)
    if not pending:
        return []
    forgotten = forgotten_versions(
        session, model_id, (int(i) for r in pending for i in r.sample_ids)
    )
    done: list[DeletionRequest] = []
    for req in pending:
        ids = [int(i) for i in req.sample_ids]
        if ids and all(i in forgotten for i in ids):
            result = session.execute(
                update(DeletionRequest)
                .where(DeletionRequest.id == req.id, DeletionRequest.status == "pending")
                .values(
                    status="completed",
                    version=max(forgotten[i] for i in ids),
                    updated_at=now or utcnow(),
                )
            )
            if result.rowcount:  # type: ignore[attr-defined]
                done.append(req)
    return done


def seal_if_due(
    session: Session, model_id: str, *, now: datetime | None = None, force: bool = False
) -> Job | None:
    """Seal the model's pending requests into a new ``unlearn`` job if the policy says so.

    Only a ``ready`` model is sealed. Requests whose samples are all forgotten already are
    completed instead (see :func:`complete_already_forgotten`).

    Args:
        model_id: The model.
        now: The clock (tests pass a future instant to trigger the age rule); default now.
        force: Seal whatever is pending, regardless of the policy.

    Returns:
        The queued job (enqueue it after the commit), or ``None`` when nothing was sealed.
    """
    now = _utc(now or utcnow())
    model = session.get(Model, model_id)
    if model is None or model.status != "ready":
        return None
    complete_already_forgotten(session, model_id, now=now)
    pending = _pending(session, model_id)
    if not pending:
        return None
    policy = batching_policy(model)
    candidates = {int(i) for r in pending for i in r.sample_ids}
    outstanding = candidates - forgotten_versions(session, model_id, candidates).keys()
    oldest_age_s = (now - _utc(pending[0].created_at)).total_seconds()
    due = (
        force
        or len(outstanding) >= policy.max_samples
        or oldest_age_s >= policy.max_wait_seconds
    )
    if not due:
        return None
    job = Job(model_id=model_id, kind="unlearn", status="queued")
    session.add(job)
    session.flush()
    result = session.execute(
        update(DeletionRequest)
        .where(
            DeletionRequest.id.in_([r.id for r in pending]),
            DeletionRequest.status == "pending",
        )
        .values(status="batched", job_id=job.id, updated_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        # Another sealer took them all between our read and our UPDATE.
        session.delete(job)
        session.flush()
        return None
    return job


def seconds_until_due(
    session: Session, model_id: str, *, now: datetime | None = None
) -> float | None:
    """Seconds until the model's oldest pending request reaches ``max_wait_seconds`` (0 if it
    already has), or ``None`` when nothing is pending. Use it to schedule the next seal check."""
    model = session.get(Model, model_id)
    if model is None:
        return None
    pending = _pending(session, model_id)
    if not pending:
        return None
    now = _utc(now or utcnow())
    age_s = (now - _utc(pending[0].created_at)).total_seconds()
    return max(0.0, batching_policy(model).max_wait_seconds - age_s)
