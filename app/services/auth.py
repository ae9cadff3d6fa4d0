"""Bearer API keys with scopes (DESIGN.md, HTTP conventions).

A key is ``secrets.token_urlsafe(32)`` (256 random bits); only its SHA-256 hex digest is stored, and
a presented key is found by the digest of what was presented, so no plaintext comparison happens.
Scopes: ``requests:write``, ``requests:read``, ``models:read`` and ``admin`` (implies every scope).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import ApiKey, utcnow
from app.errors import Forbidden, InvalidInput, Unauthorized
from app.services.key_cache import KeyCache

__all__ = [
    "ALL_SCOPES",
    "BOOTSTRAP_KEY_NAME",
    "SCOPE_ADMIN",
    "SCOPE_MODELS_READ",
    "SCOPE_REQUESTS_READ",
    "SCOPE_REQUESTS_WRITE",
    "authenticate",
    "cached_key",
    "create_key",
    "ensure_bootstrap_admin_key",
    "hash_key",
    "require_scope",
    "revoke_key",
]

SCOPE_REQUESTS_WRITE = "requests:write"
SCOPE_REQUESTS_READ = "requests:read"
SCOPE_MODELS_READ = "models:read"
SCOPE_ADMIN = "admin"
ALL_SCOPES = frozenset({SCOPE_REQUESTS_WRITE, SCOPE_REQUESTS_READ, SCOPE_MODELS_READ, SCOPE_ADMIN})
BOOTSTRAP_KEY_NAME = "bootstrap-admin"

_live_keys = KeyCache()
"""This process's memory of live keys (see :mod:`app.services.key_cache` for the revocation
bound)."""


def _engine(session: Session) -> Engine:
    return session.get_bind().engine


def hash_key(plaintext: str) -> str:
    """SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _checked_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = sorted(set(scopes))
    unknown = [s for s in wanted if s not in ALL_SCOPES]
    if unknown or not wanted:
        raise InvalidInput(
            f"unknown or missing scopes {unknown}; choose from {sorted(ALL_SCOPES)}",
            field="scopes",
        )
    return wanted


def create_key(session: Session, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is shown once and never stored.

    Raises:
        InvalidInput: An unknown scope, or none.
    """
    plaintext = secrets.token_urlsafe(32)
    key = ApiKey(name=name, key_sha256=hash_key(plaintext), scopes=_checked_scopes(scopes))
    session.add(key)
    session.flush()
    return key, plaintext


def revoke_key(session: Session, key_id: str) -> None:
    """Revoke a key (idempotent); later requests with it answer 401."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        _live_keys.forget(_engine(session), key.key_sha256)


def cached_key(session: Session, plaintext: str | None) -> ApiKey | None:
    """The live key for ``plaintext`` if this process looked it up less than
    :data:`~app.services.key_cache.KEY_CACHE_S` seconds ago (a detached copy), else ``None``:
    no I/O, so the API can answer it on the event loop."""
    return _live_keys.get(_engine(session), hash_key(plaintext)) if plaintext else None


def authenticate(session: Session, plaintext: str | None) -> ApiKey:
    """The live key whose digest matches ``plaintext``, looked up in the database (and
    remembered for :func:`cached_key`).

    Raises:
        Unauthorized: No key, an unknown key, or a revoked one.
    """
    if not plaintext:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    key = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key")
    _live_keys.put(_engine(session), key)
    return key


def require_scope(key: ApiKey, scope: str) -> None:
    """Check that ``key`` holds ``scope`` (``admin`` holds every scope).

    Raises:
        Forbidden: Naming the missing scope.
    """
    held = set(key.scopes or [])
    if SCOPE_ADMIN in held or scope in held:
        return
    raise Forbidden(f"this key lacks the scope {scope!r}", missing_scope=scope)


def ensure_bootstrap_admin_key(session: Session, value: str) -> ApiKey:
    """Make sure an admin key with plaintext ``value`` exists (idempotent; run at start).

    The key is named ``bootstrap-admin``. An earlier bootstrap key with another value (the
    environment variable was rotated) is revoked. A key with this value that an admin revoked
    stays revoked. Safe when several processes start at once (the unique digest decides).
    """
    digest = hash_key(value)
    for old in session.scalars(
        select(ApiKey).where(
            ApiKey.name == BOOTSTRAP_KEY_NAME,
            ApiKey.key_sha256 != digest,
            ApiKey.revoked_at.is_(None),
        )
    ):
        old.revoked_at = utcnow()
        _live_keys.forget(_engine(session), old.key_sha256)
    existing = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == digest))
    if existing is not None:
        return existing
    key = ApiKey(name=BOOTSTRAP_KEY_NAME, key_sha256=digest, scopes=[SCOPE_ADMIN])
    try:
        with session.begin_nested():
            session.add(key)
    except IntegrityError:  # another process inserted it first
        existing = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == digest))
        assert existing is not None
        return existing
    return key
