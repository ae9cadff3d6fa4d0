"""Figures for the ``/metrics`` scrape, read from the database at scrape time: deletion requests
and jobs by status, the sizes of applied batches (``m`` of the ledger's unlearning rows), job
durations by kind, the cumulative ε of each model's newest ledger row, and the messages of queued
jobs that the reaper published again (``jobs.redispatches``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import DeletionRequest, Job, LedgerEntry

__all__ = ["Snapshot", "snapshot"]

RECENT_ROWS = 10_000
"""Histograms are built from at most this many newest ledger rows and finished jobs."""


@dataclass(frozen=True)
class Snapshot:
    requests_by_status: dict[str, int]
    jobs_by_status: dict[str, int]
    batch_sizes: Sequence[int]
    job_durations_s: dict[str, list[float]]
    cumulative_epsilon: dict[str, float]
    cumulative_delta: dict[str, float]
    job_redispatches: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def snapshot(session: Session) -> Snapshot:
    requests = dict(session.execute(
        select(DeletionRequest.status, func.count()).group_by(DeletionRequest.status)).all())
    jobs = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    sizes = session.scalars(
        select(LedgerEntry.m).where(LedgerEntry.kind == "unlearned")
        .order_by(LedgerEntry.id.desc()).limit(RECENT_ROWS)).all()
    durations: dict[str, list[float]] = {}
    for kind, started, finished in session.execute(
        select(Job.kind, Job.started_at, Job.finished_at)
        .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .order_by(Job.finished_at.desc()).limit(RECENT_ROWS)
    ):
        durations.setdefault(kind, []).append(
            max(0.0, (_utc(finished) - _utc(started)).total_seconds()))
    newest = (select(LedgerEntry.model_id, func.max(LedgerEntry.version).label("v"))
              .group_by(LedgerEntry.model_id).subquery())
    eps: dict[str, float] = {}
    delta: dict[str, float] = {}
    for model_id, c_eps, c_delta in session.execute(
        select(LedgerEntry.model_id, LedgerEntry.cumulative_epsilon, LedgerEntry.cumulative_delta)
        .join(newest, (LedgerEntry.model_id == newest.c.model_id)
              & (LedgerEntry.version == newest.c.v))
    ):
        eps[model_id], delta[model_id] = float(c_eps), float(c_delta)
    redispatches = session.scalar(select(func.coalesce(func.sum(Job.redispatches), 0)))
    return Snapshot({str(k): int(v) for k, v in requests.items()},
                    {str(k): int(v) for k, v in jobs.items()},
                    [int(m) for m in sizes], durations, eps, delta, int(redispatches or 0))
