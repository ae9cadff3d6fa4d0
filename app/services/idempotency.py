"""``Idempotency-Key`` on creating POSTs (DESIGN.md, HTTP conventions).

A key is scoped by the API key that sends it. The first request with a key *claims* it: a row in
``idempotency_keys`` holding the request's fingerprint (SHA-256 over the method, the path and the
canonical JSON body, RFC 8785), inserted before anything else is written; the handler then creates
its rows and :meth:`Claim.remember` stores the answer on that row, all in one transaction. So a
crash leaves both the resource and its key, or neither; and a failed request (4xx) stores nothing,
so it may be retried with the same key.

A later request with the same key and the same fingerprint gets the stored answer back
(:class:`Replay`, raised so that the unit of work rolls back and nothing is created); with another
fingerprint it is refused (:class:`~app.errors.IdempotencyConflict`, 409). The claim is one
``INSERT ... ON CONFLICT DO NOTHING`` on the unique ``(api_key_id, key)``: two concurrent requests
with one key meet there, the loser waits for the winner's commit, inserts nothing, and answers as a
later request would.

A key is kept ``LETHE_IDEMPOTENCY_TTL_HOURS`` (default 24, as Stripe keeps its keys): past that it
is new again, whether or not :func:`purge_expired` (run periodically by the workers) has deleted
its row yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import rfc8785
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.models import IdempotencyKey, utcnow
from app.errors import IdempotencyConflict, InvalidInput
from app.settings import get_settings

__all__ = ["MAX_KEY_CHARS", "Claim", "Replay", "claim", "expired_before", "fingerprint",
           "purge_expired"]

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 200


class Replay(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The stored answer of an earlier request with the same key and fingerprint."""

    def __init__(self, status_code: int, body: Any, headers: dict[str, str]) -> None:
        super().__init__(f"replay of a stored {status_code} answer")
        self.status_code = status_code
        self.body = body
        self.headers = headers


def _canonical_body(body: bytes) -> bytes:
    if not body.strip():
        return b""
    try:
        return rfc8785.dumps(json.loads(body))
    except (ValueError, TypeError, rfc8785.CanonicalizationError):
        return body  # not canonicalisable JSON: the bytes themselves


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 hex of the method, the path and the body in canonical JSON (RFC 8785), so key
    order and whitespace do not matter.

    >>> fingerprint("POST", "/v1/x", b'{"a": 1, "b": 2}') == fingerprint("POST", "/v1/x", b'{"b":2,"a":1}')
    True
    """
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), _canonical_body(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    """Raises: InvalidInput (422) for an empty key or one over 200 characters."""
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters (got {len(key)})",
            field="Idempotency-Key", max_length=MAX_KEY_CHARS,
        )
    return key


@dataclass
class Claim:
    """A key claimed by this transaction; store the answer with :meth:`remember`."""

    session: Session
    row_id: str

    def remember(self, status_code: int, body: Any, headers: dict[str, str]) -> None:
        """Store the answer (JSON-ready ``body``) on the claimed row, in the same transaction."""
        # Core on the session's connection: the ORM's bulk-update layer costs more CPU than the
        # statement (intake path) and there is no object to synchronise
        self.session.connection().execute(
            update(IdempotencyKey.__table__).where(IdempotencyKey.id == self.row_id)
            .values(status_code=status_code, response_body=body, response_headers=dict(headers)))


def _answer(row: IdempotencyKey, request_sha256: str) -> Replay:
    if row.request_sha256 != request_sha256:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request "
            f"({row.method} {row.path} with another body); use a new key",
            idempotency_key=row.key,
        )
    if row.status_code is None:  # pragma: no cover - never committed unanswered
        raise IdempotencyConflict("a request with this Idempotency-Key is still in progress",
                                  idempotency_key=row.key)
    return Replay(row.status_code, row.response_body, dict(row.response_headers or {}))


def expired_before(now: datetime | None = None, ttl_hours: float | None = None) -> datetime:
    """Keys created before this instant are expired.

    Args:
        now: The clock (tests); default now, UTC.
        ttl_hours: Default ``Settings.idempotency_ttl_hours``.
    """
    ttl = get_settings().idempotency_ttl_hours if ttl_hours is None else ttl_hours
    return (now or utcnow()) - timedelta(hours=ttl)


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; Lethe stores UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def purge_expired(session: Session, *, now: datetime | None = None) -> int:
    """Delete the keys past their TTL (one indexed DELETE on ``created_at``); returns how many.

    Safe to run from several workers at once, and against concurrent claims (a claim replacing
    an expired key deletes it by id and tolerates finding it gone).
    """
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < expired_before(now))
        .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _find(session: Session, api_key_id: str, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key))


def _insert(session: Session, values: dict[str, Any]) -> str | None:
    """``INSERT ... ON CONFLICT (api_key_id, key) DO NOTHING RETURNING id``: one round trip for
    a new key. Returns the new row's id, or ``None`` when the key is taken (on PostgreSQL a
    concurrent transaction holding it is waited for first: its commit means taken, its rollback
    frees the key)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - Lethe runs on SQLite or PostgreSQL
        raise NotImplementedError(f"idempotency keys on {dialect}")
    stmt = (insert(IdempotencyKey.__table__).values(**values)
            .on_conflict_do_nothing(index_elements=["api_key_id", "key"])
            .returning(IdempotencyKey.id))
    return session.connection().execute(stmt).scalar()  # Core: see Claim.remember


_CLAIM_ROUNDS = 3
"""Insert attempts: a second after deleting an expired key, a third if its row vanished meanwhile
(a concurrent purge)."""


def claim(session: Session, api_key_id: str, key: str, *, method: str, path: str,
          body: bytes, now: datetime | None = None) -> Claim:
    """Claim ``key`` for this request, before the handler writes anything. A key stored more
    than ``LETHE_IDEMPOTENCY_TTL_HOURS`` ago is new again: its row is replaced.

    Args:
        now: The clock (tests); default now, UTC.

    Returns:
        The claim; call :meth:`Claim.remember` once the answer is known.

    Raises:
        Replay: The key was used before with the same request: answer what was stored.
        IdempotencyConflict: The key was used before with another request (409), or it kept
            changing hands under concurrent requests (retry).
        InvalidInput: A key that is empty or longer than 200 characters (422).
    """
    check_key(key)
    now = now or utcnow()
    request_sha256 = fingerprint(method, path, body)
    values = {"api_key_id": api_key_id, "key": key, "method": method.upper(), "path": path,
              "request_sha256": request_sha256, "created_at": now}
    for _ in range(_CLAIM_ROUNDS):
        row_id = _insert(session, values)
        if row_id is not None:
            return Claim(session, row_id)
        existing = _find(session, api_key_id, key)
        if existing is None:
            continue  # deleted since our insert met it (a purge): try again
        if _utc(existing.created_at) >= expired_before(now):
            raise _answer(existing, request_sha256)
        # Expired: forget it (a concurrent purge or claim may have deleted it already).
        session.expunge(existing)
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id)
                        .execution_options(synchronize_session=False))
    log.info("idempotency key %r: kept changing hands under concurrent requests", key)
    raise IdempotencyConflict("concurrent requests with this Idempotency-Key kept replacing it; "
                              "retry", idempotency_key=key)
