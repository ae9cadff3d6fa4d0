"""The live-key memory of the API (``app.services.key_cache``) through ``auth``: a looked-up key
is answered without the database for ``KEY_CACHE_S`` seconds and no longer; another process's
revocation is honoured once that passes, this process's at once; unknown and revoked keys are
never remembered; one database's keys are never answered for another. A fake clock, no sleeps."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.migrate import upgrade_to_head
from app.db.models import ApiKey
from app.db.session import make_engine
from app.errors import Unauthorized
from app.services import auth
from app.services.key_cache import KEY_CACHE_S, KeyCache


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(auth, "_live_keys", KeyCache(clock=clock))
    return clock


def _engine(tmp_path: Path, name: str):
    url = f"sqlite:///{tmp_path / name}"
    upgrade_to_head(url)
    return make_engine(url)


@pytest.fixture
def engine(tmp_path: Path):
    engine = _engine(tmp_path, "keys.db")
    yield engine
    engine.dispose()


def _new_key(engine, scopes=(auth.SCOPE_REQUESTS_WRITE,)) -> tuple[str, str]:
    with Session(engine) as s, s.begin():
        key, plaintext = auth.create_key(s, "app", scopes)
        return key.id, plaintext


def _revoke_elsewhere(engine, key_id: str) -> None:
    """What another process's ``lethe keys revoke`` leaves: the row, not this process's memory."""
    with Session(engine) as s, s.begin():
        s.execute(update(ApiKey).where(ApiKey.id == key_id)
                  .values(revoked_at=datetime.now(timezone.utc)))


def test_a_key_is_remembered_for_the_ttl_and_a_revocation_elsewhere_counts_after_it(engine, clock):
    key_id, plaintext = _new_key(engine)
    with Session(engine) as s:
        assert auth.cached_key(s, plaintext) is None  # never looked up yet
        assert auth.authenticate(s, plaintext).id == key_id
    _revoke_elsewhere(engine, key_id)
    clock.now += KEY_CACHE_S - 0.01
    with Session(engine) as s:
        cached = auth.cached_key(s, plaintext)
        assert cached is not None and cached.id == key_id
        assert cached.scopes == [auth.SCOPE_REQUESTS_WRITE]
    clock.now += 0.02  # past the bound: looked up again, and refused
    with Session(engine) as s:
        assert auth.cached_key(s, plaintext) is None
        with pytest.raises(Unauthorized):
            auth.authenticate(s, plaintext)
        assert auth.cached_key(s, plaintext) is None  # a revoked key is not remembered


def test_revoking_in_this_process_forgets_the_key_at_once(engine, clock):
    key_id, plaintext = _new_key(engine)
    with Session(engine) as s:
        auth.authenticate(s, plaintext)
    with Session(engine) as s, s.begin():
        auth.revoke_key(s, key_id)
    with Session(engine) as s:
        assert auth.cached_key(s, plaintext) is None
        with pytest.raises(Unauthorized):
            auth.authenticate(s, plaintext)


def test_rotating_the_bootstrap_key_forgets_the_old_one(engine, clock):
    with Session(engine) as s, s.begin():
        auth.ensure_bootstrap_admin_key(s, "first-admin-key")
    with Session(engine) as s:
        auth.authenticate(s, "first-admin-key")
    with Session(engine) as s, s.begin():
        auth.ensure_bootstrap_admin_key(s, "second-admin-key")
    with Session(engine) as s:
        assert auth.cached_key(s, "first-admin-key") is None
        assert auth.authenticate(s, "second-admin-key").scopes == [auth.SCOPE_ADMIN]


def test_unknown_and_missing_keys_are_not_remembered(engine, clock):
    with Session(engine) as s:
        for plaintext in ("no-such-key", "", None):
            with pytest.raises(Unauthorized):
                auth.authenticate(s, plaintext)
            assert auth.cached_key(s, plaintext) is None


def test_one_database_never_answers_for_another(tmp_path, engine, clock):
    _, plaintext = _new_key(engine)
    with Session(engine) as s:
        auth.authenticate(s, plaintext)
    other = _engine(tmp_path, "other.db")
    try:
        with Session(other) as s:
            assert auth.cached_key(s, plaintext) is None
            with pytest.raises(Unauthorized):
                auth.authenticate(s, plaintext)
    finally:
        other.dispose()


def test_the_remembered_key_is_detached_and_survives_its_session_rolling_back(engine, clock):
    key_id, plaintext = _new_key(engine)
    with Session(engine) as s:
        auth.authenticate(s, plaintext)
        s.rollback()  # expires the session's own instance, not the remembered copy
    with Session(engine) as s:
        cached = auth.cached_key(s, plaintext)
        assert cached is not None and cached.id == key_id and cached not in s


def test_a_zero_ttl_remembers_nothing(engine):
    cache = KeyCache(ttl_s=0)
    with Session(engine) as s:
        key = auth.authenticate(s, _new_key(engine)[1])
        cache.put(engine, key)
        assert cache.get(engine, key.key_sha256) is None
