"""``forgotten_and_total`` (the intake path's one query) against ``forgotten_versions`` and a plain
count: golden cases, then hypothesis over forgotten sets, asked indices and the IN-chunk size."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete
from sqlalchemy.orm import Session

from app.db.models import Base, ForgottenSample
from app.services import forgotten


@pytest.fixture(scope="module")
def engine():
    engine = create_engine("sqlite://")  # foreign keys off: no models or datasets needed
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _store(session: Session, rows: dict[str, dict[int, int]]) -> None:
    session.execute(delete(ForgottenSample))
    session.add_all(ForgottenSample(model_id=m, sample_index=i, version=v)
                    for m, by_index in rows.items() for i, v in by_index.items())
    session.flush()


def test_golden(engine):
    with Session(engine) as s:
        _store(s, {"m": {0: 1, 5: 2, 9: 2}, "other": {1: 1, 2: 1}})
        assert forgotten.forgotten_and_total(s, "m", [1, 2, 3]) == ({}, 3)
        assert forgotten.forgotten_and_total(s, "m", [9, 0, 4, 9]) == ({0: 1, 9: 2}, 3)
        assert forgotten.forgotten_and_total(s, "other", [1]) == ({1: 1}, 2)
        assert forgotten.forgotten_and_total(s, "none", [1, 2]) == ({}, 0)
        assert forgotten.forgotten_and_total(s, "m", []) == ({}, 3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.dictionaries(st.sampled_from(["a", "b"]),
                         st.dictionaries(st.integers(0, 40), st.integers(1, 4), max_size=25)),
    asked=st.lists(st.integers(0, 40), max_size=30),
    chunk=st.integers(1, 8),
)
def test_agrees_with_forgotten_versions_and_a_count(engine, monkeypatch, rows, asked, chunk):
    monkeypatch.setattr(forgotten, "_IN_CHUNK", chunk)  # more than one chunk in small cases
    with Session(engine) as s:
        _store(s, rows)
        assert forgotten.forgotten_and_total(s, "a", asked) == (
            forgotten.forgotten_versions(s, "a", asked), len(rows.get("a", {})))
