"""Wire types of worker jobs (train, unlearn, retrain)."""

from __future__ import annotations

from typing import Any, Literal

from app.schemas.common import PublicModel, UtcDatetime

JobKind = Literal["train", "unlearn", "retrain"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]


class JobPublic(PublicModel):
    """A job; ``progress`` is a fraction in [0, 1], ``timings`` seconds per phase, ``runtime`` what
    computed it once a worker claimed it (``device`` ``cpu`` or ``cuda:N``, ``device_name``,
    ``torch``, ``cuda``, ``cudnn``, ``threads``, ``deterministic``). ``attempts`` counts the
    deliveries a worker claimed; ``enqueued_at`` is when its message was last published and
    ``redispatches`` how often it was published again because the message was lost."""

    id: str
    model_id: str
    kind: JobKind
    status: JobStatus
    progress: float
    version: int | None
    error: str | None
    timings: dict[str, Any]
    runtime: dict[str, Any] | None = None
    attempts: int
    redispatches: int
    created_at: UtcDatetime
    enqueued_at: UtcDatetime | None
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class RetrainAccepted(PublicModel):
    """Answer of ``POST /v1/models/{id}/retrain``: poll ``/v1/jobs/{job_id}``."""

    job_id: str
    status: JobStatus
