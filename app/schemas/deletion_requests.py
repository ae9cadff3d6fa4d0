"""Wire types of deletion requests (lifecycle in DESIGN.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictStr

from app.schemas.common import PublicModel, RequestBody, UtcDatetime

RequestStatus = Literal["pending", "batched", "applying", "completed", "failed", "canceled"]


class DeletionRequestCreate(RequestBody):
    """Samples to forget, as the decimal row indices of the dataset's training split.

    Only the JSON type is checked here; the service checks the ids against the dataset.
    """

    sample_ids: list[StrictStr] = Field(
        description='Decimal training-row indices as strings, e.g. ["0", "17"].'
    )


class DeletionRequestPublic(PublicModel):
    """A deletion request; ``version`` names the version that no longer contains its samples."""

    id: str
    model_id: str
    status: RequestStatus
    version: int | None
    error: str | None
    sample_count: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class DeletionRequestPage(PublicModel):
    """A page of deletion requests, oldest first; pass ``next_cursor`` as ``cursor`` for the next
    page (``null`` on the last one)."""

    items: list[DeletionRequestPublic]
    next_cursor: str | None
