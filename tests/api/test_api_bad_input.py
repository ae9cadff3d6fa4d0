"""Every bad input of issue 2 answers 4xx problem+json and writes no row."""

from __future__ import annotations

import pytest

from app.db.session import session_scope
from app.services import auth

PROBLEM = "application/problem+json"


def _refused(api, response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    assert "Traceback" not in response.text
    return body


@pytest.fixture
def model(api):
    return api.ready_model()


def test_unknown_model_is_404_everywhere(api):
    before = api.counts()
    for method, path, body in [
        ("post", "/v1/models/nope/deletion-requests", {"sample_ids": ["1"]}),
        ("get", "/v1/models/nope", None),
        ("post", "/v1/models/nope/retrain", None),
        ("get", "/v1/models/nope/versions", None),
        ("get", "/v1/models/nope/versions/0", None),
        ("get", "/v1/models/nope/versions/0/download", None),
        ("get", "/v1/models/nope/budget", None),
        ("get", "/v1/deletion-requests/nope", None),
        ("get", "/v1/jobs/nope", None),
        ("get", "/v1/datasets/nope", None),
        ("get", "/v1/no-such-route", None),
    ]:
        r = api.client.request(method, path, json=body, headers=api.admin)
        _refused(api, r, 404)
    assert api.counts() == before


def test_unknown_and_malformed_ids_are_named(api, model):
    before = api.counts()
    bad = ["1437", "-1", "+1", " 1", "1 ", "01", "1.0", "1e3", "x", "", "١",
           "99999999999999999999999"]
    body = _refused(api, api.forget(model["id"], ["0", *bad, "5"]), 422)
    assert body["invalid_sample_ids"] == bad
    assert body["invalid_count"] == len(bad)
    assert body["field"] == "sample_ids"
    assert api.counts() == before


def test_at_most_twenty_bad_ids_are_named(api, model):
    bad = [str(2000 + i) for i in range(30)]
    body = _refused(api, api.forget(model["id"], bad), 422)
    assert body["invalid_sample_ids"] == bad[:20]
    assert body["invalid_count"] == 30


def test_empty_list_is_refused(api, model):
    before = api.counts()
    body = _refused(api, api.forget(model["id"], []), 422)
    assert "empty" in body["detail"]
    assert api.counts() == before


def test_duplicates_are_named(api, model):
    before = api.counts()
    body = _refused(api, api.forget(model["id"], ["1", "2", "1", "3", "2", "1"]), 422)
    assert body["duplicate_sample_ids"] == ["1", "2"]
    assert api.counts() == before


def test_too_many_ids_are_refused(api, model, monkeypatch):
    monkeypatch.setenv("LETHE_MAX_REQUEST_SAMPLES", "3")
    from app.settings import get_settings

    get_settings.cache_clear()
    before = api.counts()
    body = _refused(api, api.forget(model["id"], ["1", "2", "3", "4"]), 422)
    assert body["max_samples"] == 3
    assert api.counts() == before


@pytest.mark.parametrize("payload, field", [
    ({"sample_ids": [1, 2]}, "sample_ids.0"),
    ({"sample_ids": ["1", None]}, "sample_ids.1"),
    ({"sample_ids": "1"}, "sample_ids"),
    ({"sample_ids": {"1": 1}}, "sample_ids"),
    ({"sample_ids": ["1"], "extra": True}, "extra"),
    (["1"], "body"),
    ("1", "body"),
])
def test_wrong_types_are_refused(api, model, payload, field):
    before = api.counts()
    r = api.client.post(f"/v1/models/{model['id']}/deletion-requests", json=payload,
                        headers=api.admin)
    body = _refused(api, r, 422)
    assert field in [e["field"] for e in body["errors"]]
    assert all(set(e) == {"loc", "field", "msg", "type"} for e in body["errors"])
    assert api.counts() == before


@pytest.mark.parametrize("raw", [b"{", b'{"sample_ids": ["1",]}', b"", b"\xff\xfe", b"nul"])
def test_malformed_json_is_refused(api, model, raw):
    before = api.counts()
    r = api.client.post(f"/v1/models/{model['id']}/deletion-requests", content=raw,
                        headers={**api.admin, "Content-Type": "application/json"})
    _refused(api, r, 422)
    assert api.counts() == before


def test_unknown_route_and_wrong_method_say_what_missed(api, model):
    body = _refused(api, api.client.get("/v1/nothing-here", headers=api.admin), 404)
    assert body["detail"] == "no route GET /v1/nothing-here"
    r = api.client.delete(f"/v1/models/{model['id']}/versions", headers=api.admin)
    body = _refused(api, r, 405)
    assert body["detail"].startswith(f"DELETE is not allowed on /v1/models/{model['id']}/versions")
    assert "GET" in r.headers["allow"]


def test_a_number_as_an_id_says_to_send_a_string(api, model):
    body = _refused(api, api.client.post(f"/v1/models/{model['id']}/deletion-requests",
                                         json={"sample_ids": ["1", 102]}, headers=api.admin), 422)
    assert 'sample_ids.1 (ids are JSON strings: send "102", not 102)' in body["detail"]
    assert body["errors"][0]["type"] == "id_not_string"


def test_deeply_nested_json_is_a_422_like_other_malformed_json(api, model):
    raw = b"[" * 100_000 + b"]" * 100_000  # the decoder gives up (recursion), not a syntax error
    r = api.client.post(f"/v1/models/{model['id']}/deletion-requests", content=raw,
                        headers={**api.admin, "Content-Type": "application/json"})
    body = _refused(api, r, 422)
    assert "not valid JSON" in body["detail"] and body["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_under_another_content_type_is_a_415_naming_it(api, model, content_type):
    before = api.counts()
    headers = {**api.admin, **({"Content-Type": content_type} if content_type else {})}
    r = api.client.post(f"/v1/models/{model['id']}/deletion-requests",
                        content=b'{"sample_ids": ["3"]}', headers=headers)
    body = _refused(api, r, 415)
    assert "Content-Type: application/json" in body["detail"]
    assert (content_type or "no Content-Type") in body["detail"]
    assert api.counts() == before


def test_missing_or_wrong_key_is_401(api, model):
    before = api.counts()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YWJjOmRlZg=="},
                    {"Authorization": "Bearer"}):
        r = api.forget(model["id"], ["1"], headers=headers)
        _refused(api, r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        _refused(api, api.client.get(f"/v1/models/{model['id']}", headers=headers), 401)
        _refused(api, api.client.post("/v1/datasets", headers=headers,
                                      json={"name": "d", "source": "digits"}), 401)
    assert api.counts() == before


def test_revoked_key_is_401(api, model):
    with session_scope() as s:
        key, plaintext = auth.create_key(s, "app", [auth.SCOPE_REQUESTS_WRITE])
        key_id = key.id
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert api.forget(model["id"], ["1"], headers=headers).status_code == 202
    with session_scope() as s:
        auth.revoke_key(s, key_id)
    before = api.counts()
    _refused(api, api.forget(model["id"], ["2"], headers=headers), 401)
    assert api.counts() == before


def test_key_without_the_scope_is_403(api, model):
    with session_scope() as s:
        _, reader = auth.create_key(s, "reader", [auth.SCOPE_REQUESTS_READ])
    headers = {"Authorization": f"Bearer {reader}"}
    before = api.counts()
    body = _refused(api, api.forget(model["id"], ["1"], headers=headers), 403)
    assert body["missing_scope"] == "requests:write"
    assert "requests:write" in body["detail"]
    for method, path, scope in [
        ("get", f"/v1/models/{model['id']}", "models:read"),
        ("post", f"/v1/models/{model['id']}/retrain", "admin"),
        ("get", f"/v1/models/{model['id']}/budget", "models:read"),
    ]:
        body = _refused(api, api.client.request(method, path, headers=headers), 403)
        assert body["missing_scope"] == scope
    _refused(api, api.client.post("/v1/models", headers=headers, json={
        "name": "m", "dataset_id": model["dataset_id"], "architecture": "mlp"}), 403)
    assert api.counts() == before
    # the scope it has works
    assert api.client.get("/v1/deletion-requests/nope", headers=headers).status_code == 404


def test_failed_model_refuses_requests(api):
    model = api.model()
    from app.db import models as orm

    with session_scope() as s:
        s.get(orm.Model, model["id"]).status = "failed"
    before = api.counts()
    _refused(api, api.forget(model["id"], ["1"]), 409)
    assert api.counts() == before


def test_bad_model_bodies(api):
    ds = api.dataset()
    before = api.counts()
    base = {"name": "m", "dataset_id": ds["id"], "architecture": "mlp"}
    cases = [
        ({**base, "dataset_id": "nope"}, "dataset_id"),
        ({**base, "architecture": "resnet"}, "architecture"),
        ({**base, "training": {"epochs": 0}}, "training.epochs"),
        ({**base, "training": {"hidden": [0]}}, "training.hidden.0"),
        ({**base, "training": {"lr": -1}}, "training.lr"),
        ({**base, "training": {"unknown_knob": 1}}, "training.unknown_knob"),
        ({**base, "certification": {"solver": "newton"}}, "certification.solver"),
        ({**base, "certification": {"noise_std": 0.01, "target_epsilon": 1.0}}, "certification"),
        ({**base, "certification": {"noise_std": None}}, "certification"),
        ({**base, "certification": {"delta": 1.5}}, "certification.delta"),
        ({**base, "certification": {"noise_std": 1e300}}, "certification.noise_std"),
        ({**base, "certification": {"curvature_dtype": "float16"}}, "certification.curvature_dtype"),
        ({**base, "batching": {"max_samples": 0}}, "batching.max_samples"),
        ({**base, "batching": {"max_wait_seconds": 10**6}}, "batching.max_wait_seconds"),
        ({"dataset_id": ds["id"], "architecture": "mlp"}, "name"),
    ]
    for payload, field in cases:
        body = _refused(api, api.client.post("/v1/models", json=payload, headers=api.admin), 422)
        fields = [e["field"] for e in body.get("errors", [])] or [body.get("field")]
        assert field in fields, (payload, body)
    both = api.client.post("/v1/models", headers=api.admin, json={
        **base, "certification": {"noise_std": 0.01, "target_epsilon": 1.0}}).json()
    assert "noise_std must be null" in both["errors"][0]["msg"]
    nan = api.client.post("/v1/models", headers={**api.admin, "Content-Type": "application/json"},
                          content=f'{{"name": "m", "dataset_id": "{ds["id"]}", "architecture": '
                                  '"mlp", "training": {"lr": NaN}}')
    _refused(api, nan, 422)
    assert api.counts() == before


def test_bad_dataset_bodies(api):
    before = api.counts()
    _refused(api, api.client.post("/v1/datasets", json={"name": "d", "source": "cifar"},
                                  headers=api.admin), 422)
    _refused(api, api.client.post("/v1/datasets", json={"name": "", "source": "digits"},
                                  headers=api.admin), 422)
    mnist = api.client.post("/v1/datasets", json={"name": "d", "source": "mnist"},
                            headers=api.admin)
    not_fetched = _refused(api, mnist, 409)
    assert "lethe data fetch mnist" in not_fetched["detail"]
    synthetic = api.client.post("/v1/datasets", json={"name": "d", "source": "synthetic-svhn-shape"},
                                headers=api.admin)
    assert "lethe data fetch synthetic-svhn-shape" in _refused(api, synthetic, 409)["detail"]
    assert api.counts() == before


def test_non_integer_version_number_is_422(api, model):
    _refused(api, api.client.get(f"/v1/models/{model['id']}/versions/one", headers=api.admin), 422)


def test_unexpected_errors_are_500_without_details(api, monkeypatch):
    from fastapi.testclient import TestClient

    from app.api.main import create_app
    from app.services import models as model_service

    def boom(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(model_service, "list_models", boom)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        r = client.get("/v1/models", headers=api.admin)
    body = _refused(api, r, 500)
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert body["title"] == "Internal error"


def test_forgetting_every_sample_is_refused_at_the_door(api):
    model = api.ready_model()
    api.add_forgotten(model["id"], list(range(1000)), version=1)
    before = api.counts()
    r = api.forget(model["id"], [str(i) for i in range(1000, 1437)])
    assert r.status_code == 422 and "retain set" in r.json()["detail"]
    assert api.counts() == before


def test_wrong_types_are_refused_not_coerced(api):
    dataset = api.dataset()
    for training in ({"epochs": True}, {"epochs": "5"}, {"lr": "1e-3"}, {"batch_size": 10**30}):
        r = api.client.post("/v1/models", headers=api.admin, json={
            "name": "m", "dataset_id": dataset["id"], "architecture": "mlp", "training": training})
        assert r.status_code == 422, (training, r.text)


def test_version_numbers_beyond_64_bits_are_refused(api):
    model = api.ready_model()
    for path in ("", "/download", "/certificate"):
        r = api.client.get(f"/v1/models/{model['id']}/versions/{10**23}{path}", headers=api.admin)
        assert r.status_code == 422, r.text
