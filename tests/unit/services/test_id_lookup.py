"""Sample id and subject id → training row, through ``dataset_samples``, against a model of the
mapping built in Python: the rows match exactly, unknown ids are named in the order sent, and
small chunks (many ``IN`` lookups) answer the same as one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.db.migrate import upgrade_to_head
from app.db.models import Dataset, DatasetSample
from app.db.session import make_engine
from app.errors import InvalidInput
from app.services import id_lookup

_ids = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('lookup')) / 'lookup.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _dataset(session: Session, sample_ids: list[str], subjects: list[str] | None) -> Dataset:
    dataset = Dataset(name="u", source="upload", n=len(sample_ids), n_test=0, num_features=1,
                      num_classes=2, sample_id_scheme="uploaded", checksum_sha256="0" * 64,
                      input_shape=[1], has_subjects=subjects is not None)
    session.add(dataset)
    session.flush()
    session.execute(insert(DatasetSample), [
        {"dataset_id": dataset.id, "row_index": i, "sample_id": s,
         "subject_id": None if subjects is None else subjects[i]}
        for i, s in enumerate(sample_ids)])
    return dataset


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[str], list[str], list[str], list[str]]:
    sample_ids = draw(st.lists(_ids, min_size=1, max_size=40, unique=True))
    subjects = draw(st.lists(st.sampled_from(["ann", "bo", "cy", "dee", "ed"]),
                             min_size=len(sample_ids), max_size=len(sample_ids)))
    asked = draw(st.lists(st.sampled_from(sample_ids), unique=True, min_size=1))
    unknown = draw(st.lists(_ids.filter(lambda s: s not in sample_ids), unique=True, max_size=25))
    return sample_ids, subjects, asked, unknown


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_case(), chunk=st.sampled_from([1, 3, 5000]))
def test_rows_match_the_mapping(engine, monkeypatch, case, chunk):
    sample_ids, subjects, asked, unknown = case
    monkeypatch.setattr(id_lookup, "_LOOKUP_CHUNK", chunk)
    row_of = {s: i for i, s in enumerate(sample_ids)}
    with Session(engine) as session, session.begin():
        dataset = _dataset(session, sample_ids, subjects)
        assert id_lookup.rows_of_sample_ids(session, dataset.id, asked, max_samples=10**6) == \
            sorted(row_of[s] for s in asked)

        wanted_subjects = sorted(set(subjects[row_of[s]] for s in asked))
        assert id_lookup.rows_of_subjects(session, dataset, wanted_subjects, max_samples=10**6) \
            == [i for i, subject in enumerate(subjects) if subject in wanted_subjects]

        if unknown:
            mixed = asked + unknown
            with pytest.raises(InvalidInput) as exc:
                id_lookup.rows_of_sample_ids(session, dataset.id, mixed, max_samples=10**6)
            assert exc.value.extra["unknown_sample_ids"] == unknown[:20]
            assert exc.value.extra["unknown_count"] == len(unknown)
        session.rollback()


def test_a_subject_request_is_bounded_by_the_rows_it_covers(engine):
    with Session(engine) as session, session.begin():
        dataset = _dataset(session, ["a", "b", "c"], ["p", "p", "q"])
        assert id_lookup.rows_of_subjects(session, dataset, ["p"], max_samples=2) == [0, 1]
        with pytest.raises(InvalidInput, match="have 3 samples"):
            id_lookup.rows_of_subjects(session, dataset, ["p", "q"], max_samples=2)
        with pytest.raises(InvalidInput) as exc:
            id_lookup.rows_of_subjects(session, dataset, ["p", "p"], max_samples=9)
        assert exc.value.extra["duplicate_subject_ids"] == ["p"]
        no_subjects = _dataset(session, ["a"], None)
        with pytest.raises(InvalidInput, match="no subject column"):
            id_lookup.rows_of_subjects(session, no_subjects, ["p"], max_samples=9)
        session.rollback()


def test_empty_and_oversized_lists_are_refused(engine):
    with Session(engine) as session, session.begin():
        dataset = _dataset(session, ["a", "b"], None)
        with pytest.raises(InvalidInput, match="empty"):
            id_lookup.rows_of_sample_ids(session, dataset.id, [], max_samples=9)
        with pytest.raises(InvalidInput, match="at most 1"):
            id_lookup.rows_of_sample_ids(session, dataset.id, ["a", "b"], max_samples=1)
        session.rollback()
