"""``Idempotency-Key`` on every creating POST: replay, conflict, scoping, races, key length."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.db import models as orm
from app.db.session import session_scope
from app.services import auth


def _key(name: str, *scopes: str) -> dict[str, str]:
    with session_scope() as s:
        _, plaintext = auth.create_key(s, name, scopes)
    return {"Authorization": f"Bearer {plaintext}"}


def _with(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def test_dataset_replay_returns_the_stored_answer_and_creates_nothing(api):
    body = {"name": "digits", "source": "digits"}
    first = api.client.post("/v1/datasets", json=body, headers=_with(api.admin, "k-1"))
    assert first.status_code == 201, first.text
    before = api.counts()
    # Same body with another key order and spacing: still the same request.
    again = api.client.post("/v1/datasets", content=b'{ "source":"digits",  "name":"digits"}',
                            headers=_with(api.admin, "k-1") | {"Content-Type": "application/json"})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.counts() == before


def test_same_key_with_another_body_is_a_409_problem(api):
    assert api.client.post("/v1/datasets", json={"name": "a", "source": "digits"},
                           headers=_with(api.admin, "k")).status_code == 201
    before = api.counts()
    r = api.client.post("/v1/datasets", json={"name": "b", "source": "digits"},
                        headers=_with(api.admin, "k"))
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert "Idempotency-Key" in problem["detail"] and "different request" in problem["detail"]
    assert problem["idempotency_key"] == "k"
    assert api.counts() == before


def test_same_key_on_another_route_is_a_409(api):
    dataset = api.dataset()
    assert api.client.post("/v1/datasets", json={"name": "a", "source": "digits"},
                           headers=_with(api.admin, "shared")).status_code == 201
    r = api.client.post("/v1/models", json={"name": "m", "dataset_id": dataset["id"],
                                            "architecture": "logreg"},
                        headers=_with(api.admin, "shared"))
    assert r.status_code == 409


def test_model_replay_queues_training_once(api):
    dataset = api.dataset()
    body = {"name": "m", "dataset_id": dataset["id"], "architecture": "logreg"}
    first = api.client.post("/v1/models", json=body, headers=_with(api.admin, "model-1"))
    second = api.client.post("/v1/models", json=body, headers=_with(api.admin, "model-1"))
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second.headers["Location"] == first.headers["Location"]
    assert api.counts()["models"] == 1 and api.counts()["jobs"] == 1
    assert [m["task"] for m in api.broker_messages()] == ["lethe.train"]


def test_deletion_request_and_retrain_replays(api):
    model = api.ready_model()
    url = f"/v1/models/{model['id']}/deletion-requests"
    first = api.client.post(url, json={"sample_ids": ["1", "2"]}, headers=_with(api.admin, "d"))
    second = api.client.post(url, json={"sample_ids": ["1", "2"]}, headers=_with(api.admin, "d"))
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert api.counts()["deletion_requests"] == 1
    other = api.client.post(url, json={"sample_ids": ["3"]}, headers=_with(api.admin, "d"))
    assert other.status_code == 409

    retrain = f"/v1/models/{model['id']}/retrain"
    r1 = api.client.post(retrain, headers=_with(api.admin, "r"))
    r2 = api.client.post(retrain, headers=_with(api.admin, "r"))
    assert r1.status_code == r2.status_code == 202, r1.text
    assert r1.json() == r2.json() and r1.headers["Location"] == r2.headers["Location"]
    with session_scope() as s:
        kinds = s.scalars(select(orm.Job.kind)).all()
    assert kinds.count("retrain") == 1


def test_keys_are_scoped_by_api_key(api):
    other = _key("writer", "requests:write", "requests:read")
    model = api.ready_model()
    url = f"/v1/models/{model['id']}/deletion-requests"
    a = api.client.post(url, json={"sample_ids": ["1"]}, headers=_with(api.admin, "same"))
    b = api.client.post(url, json={"sample_ids": ["1"]}, headers=_with(other, "same"))
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_failed_request_stores_no_key_and_may_be_retried(api):
    model = api.ready_model()
    url = f"/v1/models/{model['id']}/deletion-requests"
    bad = api.client.post(url, json={"sample_ids": ["-1"]}, headers=_with(api.admin, "retry"))
    assert bad.status_code == 422
    with session_scope() as s:
        assert s.scalars(select(orm.IdempotencyKey)).all() == []
    good = api.client.post(url, json={"sample_ids": ["-1"]}, headers=_with(api.admin, "retry"))
    assert good.status_code == 422  # same input, same refusal; nothing stored either time
    ok = api.client.post(url, json={"sample_ids": ["5"]}, headers=_with(api.admin, "retry"))
    assert ok.status_code == 202


def test_key_length_is_checked(api):
    ok = api.client.post("/v1/datasets", json={"name": "a", "source": "digits"},
                         headers=_with(api.admin, "x" * 200))
    assert ok.status_code == 201
    long = api.client.post("/v1/datasets", json={"name": "a", "source": "digits"},
                           headers=_with(api.admin, "x" * 201))
    assert long.status_code == 422
    assert long.headers["content-type"].startswith("application/problem+json")
    assert "Idempotency-Key" in long.text


def test_concurrent_duplicates_create_one_resource(api):
    model = api.ready_model()
    url = f"/v1/models/{model['id']}/deletion-requests"
    answers: list[Any] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        answers.append(api.client.post(url, json={"sample_ids": ["7"]},
                                       headers=_with(api.admin, "race")))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert api.counts()["deletion_requests"] == 1


def test_the_worker_reaper_purges_expired_keys(api):
    from workers import celery_app as worker

    for key in ("stale", "fresh"):
        api.client.post("/v1/datasets", json={"name": key, "source": "digits"},
                        headers=_with(api.admin, key))
    with session_scope() as s:
        s.execute(update(orm.IdempotencyKey).where(orm.IdempotencyKey.key == "stale").values(
            created_at=orm.utcnow() - timedelta(hours=24, minutes=1)))
    worker._stop_reaper.set()  # one pass of the loop, then it returns
    try:
        worker._reaper()
    finally:
        worker._stop_reaper.clear()
    with session_scope() as s:
        assert s.scalars(select(orm.IdempotencyKey.key)).all() == ["fresh"]
