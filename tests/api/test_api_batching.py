"""Sealing pending requests into unlearn jobs (max_samples or max_wait_seconds), and retrains."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.db import models as orm
from app.db.models import utcnow
from app.db.session import session_scope
from app.services.batching import PendingSummary, pending_summary, seal_if_due, seconds_until_due


def _requests(model_id):
    with session_scope() as s:
        rows = s.scalars(select(orm.DeletionRequest).where(orm.DeletionRequest.model_id == model_id)
                         .order_by(orm.DeletionRequest.created_at)).all()
        return [(r.status, r.job_id) for r in rows]


def _jobs(model_id, kind):
    with session_scope() as s:
        return s.scalars(
            select(orm.Job).where(orm.Job.model_id == model_id, orm.Job.kind == kind)
        ).all()


def test_seals_when_max_samples_is_reached(api):
    model = api.ready_model(batching={"max_samples": 5, "max_wait_seconds": 3600})
    first = api.forget(model["id"], ["1", "2", "3"])
    assert first.json()["status"] == "pending"
    assert _jobs(model["id"], "unlearn") == []

    second = api.forget(model["id"], ["3", "4", "5"])  # 5 distinct samples now: seal
    assert second.status_code == 202
    assert second.json()["status"] == "batched"
    (job,) = _jobs(model["id"], "unlearn")
    assert job.status == "queued"
    assert _requests(model["id"]) == [("batched", job.id), ("batched", job.id)]
    polled = api.client.get(first.headers["location"], headers=api.admin).json()
    assert polled["status"] == "batched"
    assert {"task": "lethe.unlearn_batch", "args": [job.id], "eta": None} in api.broker_messages()


def test_a_single_request_of_max_samples_seals_at_once(api):
    model = api.ready_model(batching={"max_samples": 4, "max_wait_seconds": 3600})
    r = api.forget(model["id"], [str(i) for i in range(4)])
    assert r.json()["status"] == "batched"
    assert len(_jobs(model["id"], "unlearn")) == 1


def test_already_forgotten_samples_do_not_count_towards_max_samples(api):
    model = api.ready_model(batching={"max_samples": 3, "max_wait_seconds": 3600})
    api.add_forgotten(model["id"], [1, 2], version=1)
    r = api.forget(model["id"], ["1", "2", "7"])
    assert r.json()["status"] == "pending"  # only one sample is still to forget


def test_seals_by_age(api):
    model = api.ready_model(batching={"max_samples": 1000, "max_wait_seconds": 60})
    r = api.forget(model["id"], ["8"])
    assert r.json()["status"] == "pending"
    with session_scope() as s:
        assert seal_if_due(s, model["id"]) is None  # not old enough yet
        wait = seconds_until_due(s, model["id"])
        assert wait is not None and 55 < wait <= 60
    with session_scope() as s:
        job = seal_if_due(s, model["id"], now=utcnow() + timedelta(seconds=61))
        assert job is not None and job.kind == "unlearn"
        job_id = job.id
    assert _requests(model["id"]) == [("batched", job_id)]
    with session_scope() as s:  # nothing left to seal: a second sealer finds nothing
        assert seal_if_due(s, model["id"], force=True) is None
        assert seconds_until_due(s, model["id"]) is None


def test_zero_wait_seals_immediately(api):
    model = api.ready_model(batching={"max_samples": 1000, "max_wait_seconds": 0})
    assert api.forget(model["id"], ["8"]).json()["status"] == "batched"


def test_requests_wait_while_the_model_trains(api):
    model = api.model(batching={"max_samples": 1, "max_wait_seconds": 0})
    assert api.forget(model["id"], ["8"]).json()["status"] == "pending"
    with session_scope() as s:
        assert seal_if_due(s, model["id"], force=True) is None  # not ready: never sealed
        s.get(orm.Model, model["id"]).status = "ready"
    with session_scope() as s:  # what the train task does once the model is ready
        assert seal_if_due(s, model["id"]) is not None


def test_pending_requests_fully_forgotten_meanwhile_complete_when_checked(api):
    model = api.ready_model(batching={"max_samples": 1000, "max_wait_seconds": 3600})
    r = api.forget(model["id"], ["8", "9"])
    api.add_forgotten(model["id"], [8, 9], version=3)  # e.g. forgotten by a retrain meanwhile
    with session_scope() as s:
        assert seal_if_due(s, model["id"], force=True) is None
    got = api.client.get(r.headers["location"], headers=api.admin).json()
    assert (got["status"], got["version"]) == ("completed", 3)


def test_retrain_absorbs_pending_requests(api):
    model = api.ready_model(batching={"max_samples": 1000, "max_wait_seconds": 3600})
    pending = [api.forget(model["id"], [str(i)]).json()["id"] for i in range(3)]
    r = api.client.post(f"/v1/models/{model['id']}/retrain", headers=api.admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert r.headers["location"] == f"/v1/jobs/{body['job_id']}"
    job = api.client.get(r.headers["location"], headers=api.admin).json()
    assert (job["kind"], job["status"]) == ("retrain", "queued")
    assert _requests(model["id"]) == [("batched", body["job_id"])] * 3
    assert {"task": "lethe.retrain", "args": [body["job_id"]], "eta": None} in api.broker_messages()
    for rid in pending:
        polled = api.client.get(f"/v1/deletion-requests/{rid}", headers=api.admin).json()
        assert polled["status"] == "batched"

    again = api.client.post(f"/v1/models/{model['id']}/retrain", headers=api.admin)
    assert again.status_code == 409
    assert again.json()["job_id"] == body["job_id"]


def test_retrain_refused_unless_ready(api):
    model = api.model()
    before = api.counts()
    r = api.client.post(f"/v1/models/{model['id']}/retrain", headers=api.admin)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert api.counts() == before


def test_two_sealers_never_seal_a_request_twice(api, monkeypatch):
    from app.services import batching

    model = api.ready_model(batching={"max_samples": 1000, "max_wait_seconds": 3600})
    api.forget(model["id"], ["1"])
    with session_scope() as s:  # what the slower sealer read before the faster one committed
        stale = list(batching._pending(s, model["id"]))
    with session_scope() as s:
        first = seal_if_due(s, model["id"], force=True)
        assert first is not None
        first_id = first.id
    monkeypatch.setattr(batching, "_pending", lambda session, model_id: stale)
    with session_scope() as s:
        assert seal_if_due(s, model["id"], force=True) is None
    assert [j.id for j in _jobs(model["id"], "unlearn")] == [first_id]
    assert _requests(model["id"]) == [("batched", first_id)]


def test_only_the_request_that_opens_a_batch_window_schedules_its_seal_check(api):
    model = api.ready_model(batching={"max_samples": 100, "max_wait_seconds": 30})
    for ids in (["1"], ["2", "3"], ["4"]):
        assert api.forget(model["id"], ids).json()["status"] == "pending"
    seal = [m for m in api.broker_messages() if m["task"] == "lethe.seal_due"]
    assert [m["args"] for m in seal] == [[model["id"]]]
    with session_scope() as s:  # the window closes: the next request opens a new one
        assert seal_if_due(s, model["id"], force=True) is not None
    api.forget(model["id"], ["5"])
    seal = [m for m in api.broker_messages() if m["task"] == "lethe.seal_due"]
    assert [m["args"] for m in seal] == [[model["id"]], [model["id"]]]


def test_pending_summary_counts_ids_and_finds_the_oldest(api):
    model = api.ready_model(batching={"max_samples": 100, "max_wait_seconds": 30})
    with session_scope() as s:
        assert pending_summary(s, model["id"]) == PendingSummary(0, None, 0)
    first = api.forget(model["id"], ["1", "2"]).json()
    api.forget(model["id"], ["2", "3", "4"])  # "2" twice: the total bounds the distinct count
    with session_scope() as s:
        summary = pending_summary(s, model["id"])
        created = s.get(orm.DeletionRequest, first["id"]).created_at
    assert (summary.count, summary.sample_id_total) == (2, 5)
    assert summary.oldest_created_at == created.replace(tzinfo=summary.oldest_created_at.tzinfo)


def test_a_size_seal_is_skipped_only_while_another_transaction_seals(api):
    model = api.ready_model(batching={"max_samples": 2, "max_wait_seconds": 3600})
    api.forget(model["id"], ["1"])
    with session_scope() as s:
        # SQLite has no row locks (BEGIN IMMEDIATE serialises): skip_locked then never skips.
        assert seal_if_due(s, model["id"], skip_locked=True) is None  # 1 < 2: not due
    assert api.forget(model["id"], ["2"]).json()["status"] == "batched"
