"""A database that goes away under a request answers 503 problem+json with Retry-After (nothing
was stored; retry); any other driver error stays a 500 with a fixed message."""

from __future__ import annotations

import warnings

import pytest
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from app.services import requests as requests_service

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def _raising(exc: Exception):  # type: ignore[no-untyped-def]
    def submit(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise exc
    return submit


@pytest.mark.parametrize("exc", [
    OperationalError("COMMIT", {}, Exception("terminating connection due to administrator command")),
    # e.g. a connection closed under SQLAlchemy mid-statement: invalidated, not an OperationalError
    InterfaceError("SELECT 1", {}, Exception("the connection is closed"), connection_invalidated=True),
])
def test_a_lost_database_connection_answers_503(api, monkeypatch, exc):
    model = api.ready_model()
    monkeypatch.setattr(requests_service, "submit", _raising(exc))
    r = api.forget(model["id"], ["1"])
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "2"
    assert r.json()["status"] == 503 and "retry" in r.json()["detail"]


def test_other_driver_errors_stay_500(api, monkeypatch):
    model = api.ready_model()
    monkeypatch.setattr(requests_service, "submit",
                        _raising(IntegrityError("INSERT", {}, Exception("duplicate key"))))
    client = TestClient(api.client.app, raise_server_exceptions=False)  # the answer, not a raise
    r = client.post(f"/v1/models/{model['id']}/deletion-requests", json={"sample_ids": ["1"]},
                    headers=api.admin)
    assert r.status_code == 500
    assert r.json()["detail"] == "the server failed to answer this request; it has been logged"
