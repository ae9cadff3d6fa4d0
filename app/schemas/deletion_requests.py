"""Wire types of deletion requests (lifecycle in DESIGN.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictStr
from pydantic_core import PydanticCustomError

from app.schemas.common import PublicModel, RequestBody, UtcDatetime

RequestStatus = Literal["pending", "batched", "applying", "completed", "failed", "canceled"]


def _id_is_a_string(value: Any) -> Any:
    # A bare number is the likeliest mistake (uploaded ids may be integers): say how to send it.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("id_not_string", 'ids are JSON strings: send "{value}", not {value}',
                                  {"value": value})
    return value


IdString = Annotated[StrictStr, BeforeValidator(_id_is_a_string)]


class DeletionRequestCreate(RequestBody):
    """What to forget: exactly one of ``sample_ids`` or ``subject_ids``.

    Only the JSON types are checked here; the service checks the ids against the dataset (and
    refuses both or neither, naming the two fields).
    """

    sample_ids: list[IdString] | None = Field(
        default=None,
        description='Sample ids as strings: a built-in dataset\'s decimal training-row indices '
                    '(e.g. ["0", "17"]), or an uploaded dataset\'s own sample_ids.')
    subject_ids: list[IdString] | None = Field(
        default=None,
        description="Subjects whose every sample is forgotten (datasets uploaded with "
                    "subject_ids).")


class DeletionRequestPublic(PublicModel):
    """A deletion request; ``version`` names the version that no longer contains its samples."""

    id: str
    model_id: str
    status: RequestStatus
    version: int | None
    error: str | None
    sample_count: int
    subject_count: int | None = Field(
        description="Subjects named, for a subject request (sample_count is their samples).")
    created_at: UtcDatetime
    updated_at: UtcDatetime


class DeletionRequestPage(PublicModel):
    """A page of deletion requests, oldest first; pass ``next_cursor`` as ``cursor`` for the next
    page (``null`` on the last one)."""

    items: list[DeletionRequestPublic]
    next_cursor: str | None
