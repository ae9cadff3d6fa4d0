"""Cancel a pending deletion request (409 once sealed), and list requests with cursors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import models as orm
from app.db.session import session_scope
from app.services import batching
from app.services import requests as requests_service


def _pending(api, model_id: str, ids: list[str]) -> dict:
    r = api.forget(model_id, ids)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    return r.json()


def test_cancel_pending_then_it_is_never_sealed(api):
    model = api.ready_model()
    keep = _pending(api, model["id"], ["1"])
    drop = _pending(api, model["id"], ["2", "3"])
    r = api.client.post(f"/v1/deletion-requests/{drop['id']}/cancel", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled" and r.json()["id"] == drop["id"]
    again = api.client.post(f"/v1/deletion-requests/{drop['id']}/cancel", headers=api.admin)
    assert again.status_code == 200 and again.json()["status"] == "canceled"

    with session_scope() as s:
        job = batching.seal_if_due(s, model["id"], force=True)
        assert job is not None
        job_id = job.id
    with session_scope() as s:
        assert [r.id for r in requests_service.requests_of_job(s, job_id)] == [keep["id"]]
        j = s.get(orm.Job, job_id)
        assert requests_service.forget_set_of_job(s, j) == [1]
        assert s.get(orm.DeletionRequest, drop["id"]).status == "canceled"
        assert s.get(orm.DeletionRequest, drop["id"]).job_id is None


@pytest.mark.parametrize("status", ["batched", "applying", "completed", "failed"])
def test_cancel_after_sealing_is_409_naming_the_status(api, status):
    model = api.ready_model()
    req = _pending(api, model["id"], ["4"])
    with session_scope() as s:
        s.get(orm.DeletionRequest, req["id"]).status = status
    r = api.client.post(f"/v1/deletion-requests/{req['id']}/cancel", headers=api.admin)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["request_status"] == status and status in r.json()["detail"]
    with session_scope() as s:
        assert s.get(orm.DeletionRequest, req["id"]).status == status


def test_cancel_loses_to_a_seal_that_came_first(api):
    model = api.ready_model()
    req = _pending(api, model["id"], ["5"])
    with session_scope() as s:
        assert batching.seal_if_due(s, model["id"], force=True) is not None
    r = api.client.post(f"/v1/deletion-requests/{req['id']}/cancel", headers=api.admin)
    assert r.status_code == 409 and r.json()["request_status"] == "batched"


def test_cancel_unknown_is_404_and_needs_write_scope(api):
    assert api.client.post("/v1/deletion-requests/nope/cancel",
                           headers=api.admin).status_code == 404
    assert api.client.post("/v1/deletion-requests/nope/cancel").status_code == 401


def test_list_filters_and_paginates_stably(api):
    a = api.ready_model()
    b = api.ready_model()
    created = [_pending(api, a["id"], [str(i)]) for i in range(7)]
    other = _pending(api, b["id"], ["1"])
    api.client.post(f"/v1/deletion-requests/{created[2]['id']}/cancel", headers=api.admin)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"model_id": a["id"], "limit": 3} | ({"cursor": cursor} if cursor else {})
        r = api.client.get("/v1/deletion-requests", params=params, headers=api.admin)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        # A request created between pages does not shift what follows.
        if pages == 1:
            created.append(_pending(api, a["id"], ["50"]))
    assert seen == [c["id"] for c in created] and pages == 3

    everything = api.client.get("/v1/deletion-requests", params={"limit": 500},
                                headers=api.admin).json()
    assert other["id"] in [i["id"] for i in everything["items"]]
    canceled = api.client.get("/v1/deletion-requests", params={"status": "canceled"},
                              headers=api.admin).json()
    assert [i["id"] for i in canceled["items"]] == [created[2]["id"]]
    assert canceled["next_cursor"] is None


def test_list_orders_by_time_then_id(api):
    model = api.ready_model()
    with session_scope() as s:
        t0 = orm.utcnow()
        for i, rid in enumerate(["c" * 32, "a" * 32, "b" * 32]):
            s.add(orm.DeletionRequest(id=rid, model_id=model["id"], sample_ids=[i],
                                      created_at=t0 if i else t0 - timedelta(seconds=1)))
    ids = []
    cursor = None
    for _ in range(3):
        r = api.client.get("/v1/deletion-requests", headers=api.admin,
                           params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        ids += [i["id"] for i in r["items"]]
        cursor = r["next_cursor"]
    assert ids == ["c" * 32, "a" * 32, "b" * 32] and cursor is None


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 501}, {"limit": "x"}, {"status": "bogus"}, {"cursor": "not-a-cursor"},
    {"cursor": "W10"}, {"cursor": "x" * 300}, {"model_id": ""}, {"model_id": "m" * 65},
])
def test_list_refuses_bad_query_params(api, params):
    r = api.client.get("/v1/deletion-requests", params=params, headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_list_needs_read_scope(api):
    assert api.client.get("/v1/deletion-requests").status_code == 401
    with session_scope() as s:
        assert s.scalars(select(orm.DeletionRequest)).all() == []


def test_models_list_pages_with_a_next_cursor_header(api):
    dataset = api.dataset()
    ids = [api.model(dataset["id"])["id"] for _ in range(5)]
    assert [m["id"] for m in api.client.get("/v1/models", headers=api.admin).json()] == ids
    seen, cursor = [], None
    for _ in range(3):
        r = api.client.get("/v1/models", headers=api.admin,
                           params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200
        seen += [m["id"] for m in r.json()]
        cursor = r.headers.get("Next-Cursor")
    assert seen == ids and cursor is None
    for bad in ({"limit": 0}, {"cursor": "zz"}, {"limit": 501}):
        assert api.client.get("/v1/models", headers=api.admin, params=bad).status_code == 422


def test_client_lists_and_cancels_and_its_retries_are_idempotent(api):
    import httpx

    from app.client import LetheClient, LetheClientError, RetryPolicy

    model = api.ready_model()
    sent: list[httpx.Request] = []
    failures = {"left": 1}

    def handler(request: httpx.Request) -> httpx.Response:
        # The first POST reaches the app, but its answer is "lost" (a 503 instead): the
        # client retries with the same Idempotency-Key and gets the stored answer.
        sent.append(request)
        answer = api.client.request(request.method, request.url.raw_path.decode(),
                                    content=request.content, headers=dict(request.headers))
        if request.method == "POST" and request.url.path.endswith("deletion-requests") \
                and failures["left"]:
            failures["left"] -= 1
            return httpx.Response(503, headers={"Retry-After": "0"})
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    key = api.admin["Authorization"].removeprefix("Bearer ")
    with LetheClient("http://lethe", key, transport=httpx.MockTransport(handler),
                     retry=RetryPolicy(attempts=3, backoff_s=0), sleep=lambda _s: None) as client:
        request = client.forget(model["id"], ["3"])
        posts = [r for r in sent if r.method == "POST"]
        assert len(posts) == 2
        assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
        assert api.counts()["deletion_requests"] == 1
        page = client.list_requests(model_id=model["id"], status="pending")
        assert [i["id"] for i in page["items"]] == [request["id"]]
        assert client.cancel_request(request["id"])["status"] == "canceled"
        with session_scope() as s:
            s.get(orm.DeletionRequest, request["id"]).status = "batched"
        try:
            client.cancel_request(request["id"])
        except LetheClientError as exc:
            assert exc.status == 409
        else:
            raise AssertionError("cancel of a batched request must fail")
