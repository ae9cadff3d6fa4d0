"""The idempotency service on its own: fingerprints, and the race where two requests claim one
key at once (the loser rolls back its empty transaction and answers from the winner's row)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.db.migrate import upgrade_to_head
from app.db.models import ApiKey
from app.db.session import make_engine
from app.errors import IdempotencyConflict, InvalidInput
from app.services import idempotency


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
