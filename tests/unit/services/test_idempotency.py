"""The idempotency service on its own: fingerprints, the race where two requests claim one
key at once (the loser rolls back its empty transaction and answers from the winner's row), and
expiry after ``LETHE_IDEMPOTENCY_TTL_HOURS`` with an explicit clock (claims and the purge)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.migrate import upgrade_to_head
from app.db.models import ApiKey, IdempotencyKey
from app.db.session import make_engine
from app.errors import IdempotencyConflict, InvalidInput
from app.services import idempotency
from app.settings import get_settings


@pytest.fixture
def engine(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'idem.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    with Session(engine) as s, s.begin():
        s.add(ApiKey(id="k1", name="k", key_sha256="0" * 64, scopes=["admin"]))
    yield engine
    engine.dispose()


def test_fingerprint_ignores_key_order_and_whitespace_but_not_route_or_method():
    fp = idempotency.fingerprint
    assert fp("POST", "/a", b'{"x":[1,2],"y":"z"}') == fp("post", "/a", b' {"y": "z", "x": [1, 2]} ')
    assert fp("POST", "/a", b"{}") != fp("POST", "/b", b"{}")
    assert fp("POST", "/a", b"{}") != fp("PUT", "/a", b"{}")
    assert fp("POST", "/a", b'{"x":1}') != fp("POST", "/a", b'{"x":2}')
    assert fp("POST", "/a", b"not json") == fp("POST", "/a", b"not json")


@pytest.mark.parametrize("key", ["", "x" * 201])
def test_bad_keys_are_refused(engine, key):
    with Session(engine) as s, pytest.raises(InvalidInput):
        idempotency.claim(s, "k1", key, method="POST", path="/a", body=b"{}")


def _store(engine, body: bytes) -> None:
    with Session(engine) as s, s.begin():
        claim = idempotency.claim(s, "k1", "key", method="POST", path="/a", body=body)
        claim.remember(201, {"id": "r1"}, {"Location": "/a/r1"})


def test_replay_and_conflict(engine):
    _store(engine, b'{"n":1}')
    with Session(engine) as s:
        with pytest.raises(idempotency.Replay) as replay:
            idempotency.claim(s, "k1", "key", method="POST", path="/a", body=b'{"n": 1}')
        assert (replay.value.status_code, replay.value.body, replay.value.headers) == (
            201, {"id": "r1"}, {"Location": "/a/r1"})
        with pytest.raises(IdempotencyConflict):
            idempotency.claim(s, "k1", "key", method="POST", path="/a", body=b'{"n": 2}')


@pytest.mark.parametrize(("body", "outcome"), [(b'{"n":1}', idempotency.Replay),
                                               (b'{"n":2}', IdempotencyConflict)])
def test_losing_a_concurrent_claim_answers_from_the_winner(engine, monkeypatch, body, outcome):
    _store(engine, b'{"n":1}')
    # The loser looked before the winner committed: its first look finds nothing.
    real_find = idempotency._find
    looks: list[str] = []

    def find_late(*args):
        looks.append("look")
        return None if len(looks) == 1 else real_find(*args)

    monkeypatch.setattr(idempotency, "_find", find_late)
    with Session(engine) as s, pytest.raises(outcome):
        idempotency.claim(s, "k1", "key", method="POST", path="/a", body=body)
    assert len(looks) == 2  # the unique constraint caught it, then the winner's row answered


# --- expiry: LETHE_IDEMPOTENCY_TTL_HOURS (default 24), with an explicit clock -----------------

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _claim_at(engine, key: str, body: bytes, at: datetime) -> str:
    """Claim and answer ``key`` at ``at``; returns "new" or "replay"."""
    with Session(engine) as s, s.begin():
        try:
            claim = idempotency.claim(s, "k1", key, method="POST", path="/a", body=body, now=at)
        except idempotency.Replay:
            return "replay"
        claim.remember(201, {"id": key}, {})
        return "new"


def test_a_key_past_its_ttl_is_new_again(engine):
    assert _claim_at(engine, "k", b'{"x":1}', T0) == "new"
    assert _claim_at(engine, "k", b'{"x":1}', T0 + timedelta(hours=23, minutes=59)) == "replay"
    with pytest.raises(IdempotencyConflict):
        _claim_at(engine, "k", b'{"x":2}', T0 + timedelta(hours=23, minutes=59))
    # 24 h later, another body is no conflict: the key starts over, stamped with the new time
    assert _claim_at(engine, "k", b'{"x":2}', T0 + timedelta(hours=24, seconds=1)) == "new"
    assert _claim_at(engine, "k", b'{"x":2}', T0 + timedelta(hours=30)) == "replay"
    with Session(engine) as s:
        (row,) = s.scalars(select(IdempotencyKey)).all()
        assert row.request_sha256 == idempotency.fingerprint("POST", "/a", b'{"x":2}')


def test_the_ttl_comes_from_the_setting(monkeypatch):
    monkeypatch.setenv("LETHE_IDEMPOTENCY_TTL_HOURS", "1.5")
    get_settings.cache_clear()
    try:
        assert idempotency.expired_before(T0) == T0 - timedelta(minutes=90)
    finally:
        get_settings.cache_clear()
    assert idempotency.expired_before(T0, ttl_hours=24) == T0 - timedelta(hours=24)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ages_min=st.lists(st.integers(0, 3 * 24 * 60), min_size=0, max_size=8),
       now_min=st.integers(0, 4 * 24 * 60))
def test_purge_deletes_exactly_the_expired_keys(engine, ages_min, now_min):
    with Session(engine) as s, s.begin():
        s.execute(delete(IdempotencyKey))
        for i, minute in enumerate(ages_min):
            s.add(IdempotencyKey(api_key_id="k1", key=f"k{i}", method="POST", path="/a",
                                 request_sha256="0" * 64, status_code=201, response_body={},
                                 response_headers={}, created_at=T0 + timedelta(minutes=minute)))
    now = T0 + timedelta(minutes=now_min)
    with Session(engine) as s, s.begin():
        purged = idempotency.purge_expired(s, now=now)
    with Session(engine) as s:
        left = set(s.scalars(select(IdempotencyKey.key)).all())
    cutoff = now - timedelta(hours=24)
    assert left == {f"k{i}" for i, m in enumerate(ages_min) if T0 + timedelta(minutes=m) >= cutoff}
    assert purged == len(ages_min) - len(left)
