"""Opaque cursors for keyset pagination in ``(created_at, id)`` order, oldest first.

A cursor is the URL-safe base64 of ``["<created_at ISO 8601 UTC>", "<id>"]`` of the last row of
a page; the next page holds the rows strictly after it. Rows inserted meanwhile never shift a
page (unlike offsets), and the order is total because ids are unique.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput

__all__ = ["Cursor", "after", "decode_cursor", "encode_cursor"]

MAX_CURSOR_CHARS = 200


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: str


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(
        timezone.utc)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """The cursor after a row.

    >>> c = encode_cursor(datetime(2026, 1, 2, tzinfo=timezone.utc), "ab")
    >>> decode_cursor(c) == Cursor(datetime(2026, 1, 2, tzinfo=timezone.utc), "ab")
    True
    """
    raw = json.dumps([_utc(created_at).isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    """Raises: InvalidInput (422, ``field="cursor"``) for anything this module did not write."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(row_id, str) or len(row_id) > 64:
            raise ValueError("wrong types")
        return Cursor(_utc(datetime.fromisoformat(created)), row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this service returned; pass next_cursor as is",
                           field="cursor") from exc


def after(created_col: InstrumentedAttribute[Any], id_col: InstrumentedAttribute[Any],
          cursor: Cursor) -> Any:
    """The WHERE clause ``(created_at, id) > cursor``."""
    return or_(created_col > cursor.created_at,
               and_(created_col == cursor.created_at, id_col > cursor.id))
