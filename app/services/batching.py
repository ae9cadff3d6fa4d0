"""Seal pending deletion requests into one ``unlearn`` job (DESIGN.md, deletion request lifecycle).

A model's pending requests are sealed together when the distinct samples they name that no
version has forgotten yet reach ``batching.max_samples``, or when the oldest of them has waited
``batching.max_wait_seconds``, whichever comes first; or on demand (``force``). Sealing is a
conditional UPDATE (``... WHERE status = 'pending'``), so two sealers racing never put one request
into two jobs.

On the intake path (:func:`seal_after_submit`) one aggregate query over the model's pending
requests decides whether the full check is needed, and whether the request opened a batch window
(then it schedules the window's seal check): the sum of their id
counts bounds the distinct outstanding samples from above, so below ``max_samples`` (and with the
oldest younger than ``max_wait_seconds``) nothing can be due, and nothing is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db.models import DeletionRequest, Job, Model, utcnow
from app.schemas.models import BatchingSpec
from app.services.forgotten import forgotten_versions

__all__ = [
    "AfterSubmit",
    "PendingSummary",
    "batching_policy",
    "complete_already_forgotten",
    "pending_summary",
    "seal_after_submit",
    "seal_if_due",
    "seconds_until_due",
]


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


def _lock_model(session: Session, model_id: str, *, skip_locked: bool) -> bool:
    """Take the model's row lock for sealing (``FOR NO KEY UPDATE``: it does not block the
    ``FOR KEY SHARE`` that each new request's foreign key takes). Sealers then run one at a time,
    so two never read the same pending set and the loser never seals a handful of stragglers as
    a tiny batch. SQLite has no row locks: ``BEGIN IMMEDIATE`` serialises writers already.

    Returns:
        ``False`` when ``skip_locked`` and another transaction holds the lock (it is sealing).
    """
    locked = session.scalar(select(Model.id).where(Model.id == model_id)
                            .with_for_update(key_share=True, skip_locked=skip_locked))
    return locked is not None


def seal_if_due(
    session: Session, model_id: str, *, now: datetime | None = None, force: bool = False,
    skip_locked: bool = False,
) -> Job | None:
    """Seal the model's pending requests into a new ``unlearn`` job if the policy says so.

    Only a ``ready`` model is sealed. Requests whose samples are all forgotten already are
    completed instead (see :func:`complete_already_forgotten`).

    Args:
        model_id: The model.
        now: The clock (tests pass a future instant to trigger the age rule); default now.
        force: Seal whatever is pending, regardless of the policy.
        skip_locked: Return ``None`` at once if another transaction is sealing this model
            (the intake path); otherwise wait for it.

    Returns:
        The queued job (enqueue it after the commit), or ``None`` when nothing was sealed.
    """
    now = _utc(now or utcnow())
    model = session.get(Model, model_id)
    if model is None or model.status != "ready":
        return None
    if not _lock_model(session, model_id, skip_locked=skip_locked):
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


@dataclass(frozen=True)
class PendingSummary:
    """A model's pending requests in one aggregate row.

    Attributes:
        count: Pending requests.
        oldest_created_at: When the oldest was accepted (``None`` when none is pending).
        sample_id_total: Sum of their id counts: an upper bound on the distinct samples they name.
    """

    count: int
    oldest_created_at: datetime | None
    sample_id_total: int


def pending_summary(session: Session, model_id: str) -> PendingSummary:
    """One aggregate query over the model's pending requests (index ``model_id, status``)."""
    count, oldest, total = session.execute(
        select(func.count(), func.min(DeletionRequest.created_at),
               func.coalesce(func.sum(func.json_array_length(DeletionRequest.sample_ids)), 0))
        .where(DeletionRequest.model_id == model_id, DeletionRequest.status == "pending")
    ).one()
    return PendingSummary(int(count), _utc(oldest) if oldest is not None else None, int(total))


def _may_be_due(summary: PendingSummary, policy: BatchingSpec, now: datetime) -> bool:
    if summary.oldest_created_at is None:
        return False
    age_s = (now - summary.oldest_created_at).total_seconds()
    return summary.sample_id_total >= policy.max_samples or age_s >= policy.max_wait_seconds


@dataclass(frozen=True)
class AfterSubmit:
    """What the intake path does once a request is stored.

    Attributes:
        job: A batch sealed now (enqueue it after the commit), or ``None``.
        seal_check_in_s: The request opened a batch window (no other request is pending): check
            the window in this many seconds. ``None`` otherwise: the later requests ride on the
            first one's timer, and a timer that fires early (its request was canceled)
            reschedules itself for the new oldest (``engine.seal_and_enqueue``). Two first
            requests that meet concurrently both schedule one, which is harmless.
    """

    job: Job | None
    seal_check_in_s: float | None


def seal_after_submit(
    session: Session, model: Model, *, now: datetime | None = None
) -> AfterSubmit:
    """:func:`seal_if_due` after a request was stored, skipped when the pending requests cannot
    be due (see the module docstring), or when another transaction is sealing this model (the
    request then waits for the next check: a later submit, its window's timer, or the check after
    each job). A submit changes only the pending set, so completing requests that a new version
    forgot meanwhile is left to the seal checks after each job. A model that is not ``ready``
    seals nothing; its training re-checks when it publishes.
    """
    now = _utc(now or utcnow())
    if model.status != "ready":
        return AfterSubmit(None, None)
    summary = pending_summary(session, model.id)
    policy = batching_policy(model)
    if _may_be_due(summary, policy, now):
        job = seal_if_due(session, model.id, now=now, skip_locked=True)
        if job is not None:
            return AfterSubmit(job, None)
    if summary.count != 1 or summary.oldest_created_at is None:
        return AfterSubmit(None, None)
    age_s = (now - summary.oldest_created_at).total_seconds()
    return AfterSubmit(None, max(0.0, policy.max_wait_seconds - age_s))
