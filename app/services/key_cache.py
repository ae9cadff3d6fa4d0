"""A per-process, short-lived memory of live API keys, so that the intake path does not look its
caller's key up in the database (a query and a worker-thread hop) on every request.

What it may cost: a key revoked by another process (``lethe keys revoke``, another API process)
is still accepted here for at most :data:`KEY_CACHE_S` seconds after the revocation commits; the
process that revokes forgets the key at once. Unknown and revoked keys are never remembered, so
they cost a query each, as before. A key's scopes never change after it is created, so a
remembered key cannot carry scopes it no longer has. Entries are kept per database engine, so a
new engine (``reset_engine``, another database in tests) never sees another database's keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from weakref import WeakKeyDictionary

from sqlalchemy import Engine

from app.db.models import ApiKey

__all__ = ["KEY_CACHE_S", "KeyCache"]

KEY_CACHE_S = 2.0
"""How long a live key is remembered: the bound on how late another process's revocation is
honoured here."""


def _snapshot(key: ApiKey) -> ApiKey:
    """A detached copy (never attached to a session: safe to share across requests)."""
    return ApiKey(id=key.id, name=key.name, key_sha256=key.key_sha256, scopes=list(key.scopes),
                  created_at=key.created_at, revoked_at=None)


class KeyCache:
    """Live keys by SHA-256 digest, per engine, each for ``ttl_s`` seconds.

    Args:
        ttl_s: Seconds an entry lives (0 remembers nothing).
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, ttl_s: float = KEY_CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: WeakKeyDictionary[Engine, dict[str, tuple[float, ApiKey]]] = (
            WeakKeyDictionary())

    def get(self, engine: Engine, digest: str) -> ApiKey | None:
        """The remembered live key with this digest, or ``None`` (unknown or expired)."""
        entry = self._entries.get(engine, {}).get(digest)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def put(self, engine: Engine, key: ApiKey) -> None:
        """Remember a live key (read from ``engine``'s database just now)."""
        if self.ttl_s > 0 and key.revoked_at is None:
            self._entries.setdefault(engine, {})[key.key_sha256] = (
                self.clock() + self.ttl_s, _snapshot(key))

    def forget(self, engine: Engine, digest: str) -> None:
        """Drop a key (it is being revoked)."""
        self._entries.get(engine, {}).pop(digest, None)
