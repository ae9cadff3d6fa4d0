"""On real PostgreSQL (read committed, truly concurrent transactions): duplicates with one
``Idempotency-Key`` create one resource (the losers meet the unique constraint and answer the
stored response), a cancel racing a seal never both win, and intake sealers take turns on the
model's row lock (one that finds it held leaves its request pending for the next check)."""

from __future__ import annotations

import threading
import warnings
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from app.db import models as orm
from app.db.session import get_sessionmaker, session_scope
from app.services import batching
from app.services import requests as requests_service
from app.settings import get_settings
from service_harness import PG_ADMIN_KEY

HEADERS = {"Authorization": f"Bearer {PG_ADMIN_KEY}"}


def _ready_model(client: TestClient) -> str:
    dataset = client.post("/v1/datasets", json={"name": "d", "source": "digits"}, headers=HEADERS)
    model = client.post("/v1/models", json={"name": "m", "dataset_id": dataset.json()["id"],
                                            "architecture": "logreg"}, headers=HEADERS).json()
    with session_scope() as s:
        row = s.get(orm.Model, model["id"])
        assert row is not None
        row.status, row.current_version = "ready", 0
    return str(model["id"])


def _together(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_duplicates_create_one_request(client: TestClient) -> None:
    model_id = _ready_model(client)
    url = f"/v1/models/{model_id}/deletion-requests"
    for round_ in range(5):
        answers = _together(12, lambda _i: client.post(
            url, json={"sample_ids": [str(round_)]},
            headers=HEADERS | {"Idempotency-Key": f"race-{round_}"}))
        assert [a.status_code for a in answers] == [202] * 12, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(orm.DeletionRequest)) == 5
        assert s.scalar(select(func.count()).select_from(orm.IdempotencyKey)) == 5


def test_concurrent_different_bodies_one_wins_the_rest_409(client: TestClient) -> None:
    model_id = _ready_model(client)
    url = f"/v1/models/{model_id}/deletion-requests"
    answers = _together(8, lambda i: client.post(
        url, json={"sample_ids": [str(i)]}, headers=HEADERS | {"Idempotency-Key": "one"}))
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] + [409] * 7, [a.text for a in answers]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(orm.DeletionRequest)) == 1


def test_concurrent_reuses_of_an_expired_key_create_one_new_request(client: TestClient) -> None:
    model_id = _ready_model(client)
    url = f"/v1/models/{model_id}/deletion-requests"
    first = client.post(url, json={"sample_ids": ["1"]}, headers=HEADERS | {"Idempotency-Key": "old"})
    with session_scope() as s:  # the key was stored more than LETHE_IDEMPOTENCY_TTL_HOURS ago
        s.execute(update(orm.IdempotencyKey).values(
            created_at=orm.utcnow() - timedelta(hours=get_settings().idempotency_ttl_hours, minutes=1)))
    answers = _together(8, lambda _i: client.post(
        url, json={"sample_ids": ["2"]}, headers=HEADERS | {"Idempotency-Key": "old"}))
    assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1 and first.json()["id"] not in ids  # one new request; the rest replay it
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == [""] + ["true"] * 7
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(orm.DeletionRequest)) == 2
        assert s.scalar(select(func.count()).select_from(orm.IdempotencyKey)) == 1


def test_cancel_and_seal_never_both_win(client: TestClient) -> None:
    model_id = _ready_model(client)
    for round_ in range(10):
        req = client.post(f"/v1/models/{model_id}/deletion-requests",
                          json={"sample_ids": [str(round_)]}, headers=HEADERS).json()

        def act(i: int) -> Any:
            if i == 0:
                return client.post(f"/v1/deletion-requests/{req['id']}/cancel",
                                   headers=HEADERS).status_code
            with session_scope() as s:
                job = batching.seal_if_due(s, model_id, force=True)
                return job.id if job else None

        cancel_code, job_id = _together(2, act)
        with session_scope() as s:
            row = s.get(orm.DeletionRequest, req["id"])
            assert row is not None
            if cancel_code == 200:
                assert row.status == "canceled" and row.job_id is None and job_id is None
            else:
                assert cancel_code == 409 and row.status == "batched" and row.job_id == job_id
                job = s.get(orm.Job, job_id)
                assert [r.id for r in requests_service.requests_of_job(s, job_id)] == [req["id"]]
                assert job is not None
                job.status = "succeeded"
                row.status = "completed"


def test_an_intake_seal_skips_while_another_transaction_holds_the_model(client: TestClient) -> None:
    model_id = _ready_model(client)
    with session_scope() as s:
        s.get_one(orm.Model, model_id).batching = {"max_samples": 3, "max_wait_seconds": 3600}
    url = f"/v1/models/{model_id}/deletion-requests"
    for ids in (["1"], ["2"]):
        assert client.post(url, json={"sample_ids": ids}, headers=HEADERS).json()["status"] == "pending"
    holder = get_sessionmaker()()  # a sealer in the middle of its transaction
    try:
        assert batching.seal_if_due(holder, model_id) is None  # not due yet; the row stays locked
        due = client.post(url, json={"sample_ids": ["3"]}, headers=HEADERS)
        assert due.status_code == 202 and due.json()["status"] == "pending"  # skipped, not blocked
    finally:
        holder.rollback()
        holder.close()
    sealed = client.post(url, json={"sample_ids": ["4"]}, headers=HEADERS)
    assert sealed.json()["status"] == "batched"
    with session_scope() as s:
        jobs = {r.job_id for r in s.scalars(select(orm.DeletionRequest)
                                            .where(orm.DeletionRequest.model_id == model_id))}
    assert len(jobs) == 1 and None not in jobs  # all four sealed together, once
