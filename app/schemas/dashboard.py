"""Wire types of the admin dashboard's own routes (``/v1/admin/...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.schemas.common import PublicModel, UtcDatetime
from app.schemas.versions import VersionPublic


class FailedRequest(PublicModel):
    id: str
    error: str | None
    sample_count: int
    updated_at: UtcDatetime


class ActiveJob(PublicModel):
    """A queued or running job; ``progress`` is a fraction in [0, 1]."""

    id: str
    kind: str
    status: str
    progress: float
    created_at: UtcDatetime
    started_at: UtcDatetime | None


class RequestSummaryPublic(PublicModel):
    """A model's deletion-request queue (counts by status, every status listed) and active jobs."""

    model_id: str
    counts: dict[str, int]
    total: int
    oldest_pending_age_s: float | None = Field(description="Age of the oldest pending request, s.")
    recent_failures: list[FailedRequest]
    active_jobs: list[ActiveJob]


class Verification(PublicModel):
    status: Literal["OK", "FAIL"]
    detail: str


class VersionRowPublic(VersionPublic):
    """A version with its certificate's verification (Ed25519 signature by a listed key, and
    ``weights_sha256`` equal to the stored file's SHA-256)."""

    verification: Verification


class VersionPagePublic(PublicModel):
    """One page of versions, newest first."""

    total: int
    limit: int
    offset: int
    items: list[VersionRowPublic]
