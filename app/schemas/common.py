"""Shared building blocks of the wire types: base classes and UTC timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored timestamp is UTC, so say so on the wire."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""A timestamp serialised as ISO 8601 with an explicit UTC offset."""


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields, NaN and infinities are refused (422)."""

    # strict: a wrong JSON type is refused (``true`` or ``"5"`` for an int), never coerced.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class PublicModel(BaseModel):
    """Base of response bodies, built from ORM rows or dicts.

    An unbounded ε (a release with σ = 0) is written as the JSON string "Infinity", never as
    null: an unbounded guarantee must not read as a missing one.
    """

    model_config = ConfigDict(from_attributes=True, ser_json_inf_nan="strings")
