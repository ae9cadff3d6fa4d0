"""Uploads and subject requests on real PostgreSQL: the id mapping resolves non-ASCII ids, ids
PostgreSQL text cannot hold (NUL) are refused as unknown with a 422 (never a 500), and a failed
upload leaves no row behind."""

from __future__ import annotations

import io
import warnings

import numpy as np
from sqlalchemy import func, select

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from app.db import models as orm
from app.db.session import session_scope
from service_harness import PG_ADMIN_KEY

HEADERS = {"Authorization": f"Bearer {PG_ADMIN_KEY}"}


def _npz(n: int, *, duplicate: bool = False) -> bytes:
    ids = [f"échantillon-{i}" for i in range(n)]
    if duplicate:
        ids[-1] = ids[0]
    buf = io.BytesIO()
    np.savez(buf, x=np.random.default_rng(0).random((n, 5)), y=np.arange(n) % 2,
             sample_ids=np.array(ids), subject_ids=np.array([f"人-{i // 4}" for i in range(n)]))
    return buf.getvalue()


def _rows() -> tuple[int, int]:
    with session_scope() as s:
        return (s.scalar(select(func.count()).select_from(orm.Dataset)) or 0,
                s.scalar(select(func.count()).select_from(orm.DatasetSample)) or 0)


def test_subject_requests_resolve_on_postgres(client: TestClient) -> None:
    refused = client.post("/v1/datasets/upload", params={"name": "dup"},
                          content=_npz(40, duplicate=True), headers=HEADERS)
    assert refused.status_code == 422 and _rows() == (0, 0)

    r = client.post("/v1/datasets/upload", params={"name": "u"}, content=_npz(40), headers=HEADERS)
    assert r.status_code == 201, r.text
    assert _rows() == (1, 40)
    model = client.post("/v1/models", json={"name": "m", "dataset_id": r.json()["id"],
                                            "architecture": "logreg"}, headers=HEADERS).json()
    with session_scope() as s:
        row = s.get(orm.Model, model["id"])
        assert row is not None
        row.status, row.current_version = "ready", 0

    url = f"/v1/models/{model['id']}/deletion-requests"
    by_subject = client.post(url, json={"subject_ids": ["人-2", "人-9"]}, headers=HEADERS)
    assert by_subject.status_code == 202, by_subject.text
    by_sample = client.post(url, json={"sample_ids": ["échantillon-39"]}, headers=HEADERS)
    assert by_sample.status_code == 202, by_sample.text
    with session_scope() as s:
        stored = s.get(orm.DeletionRequest, by_subject.json()["id"])
        assert stored is not None
        assert stored.sample_ids == [8, 9, 10, 11, 36, 37, 38, 39]
        assert stored.subject_ids == ["人-2", "人-9"]

    for body in ({"subject_ids": ["人-1", "bad\u0000id"]}, {"sample_ids": ["x" * 300]}):
        bad = client.post(url, json=body, headers=HEADERS)
        assert bad.status_code == 422, bad.text
        field = next(iter(body))
        assert bad.json()[f"unknown_{field}"] == [v[:64] + ("…" if len(v) > 64 else "")
                                                  for v in body[field][-1:]]
