"""The dashboard's page, static files and admin-only JSON routes (summary, versions page with
verification status), including 0 models, a failed model and 1000 versions."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from app.api import paths
from app.db import models as orm
from app.db.session import session_scope
from app.services import signing


def _reader(api) -> dict[str, str]:
    from app.services.auth import create_key

    with session_scope() as s:
        _, plaintext = create_key(s, "reader", ["models:read"])
    return {"Authorization": f"Bearer {plaintext}"}


def test_page_and_static_files_are_served_locally(api):
    page = api.client.get(paths.ADMIN)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/admin/static/admin.js" in page.text and "http" not in page.text.replace(
        "http://www.w3.org", "")  # no CDN
    js = api.client.get("/admin/static/admin.js")
    assert js.status_code == 200 and "sessionStorage" in js.text
    assert "localStorage" not in js.text
    assert api.client.get("/admin/static/admin.css").status_code == 200
    assert api.client.get("/admin/static/admin.html").status_code == 404
    assert api.client.get("/admin/static/..%2Fadmin.html").status_code == 404


def test_summary_counts_ages_failures_and_active_jobs(api):
    model = api.ready_model()
    mid = model["id"]
    assert api.forget(mid, ["1"]).status_code == 202
    assert api.forget(mid, ["2", "3"]).status_code == 202
    past = datetime.now(timezone.utc) - timedelta(seconds=90)
    with session_scope() as s:
        first = s.query(orm.DeletionRequest).filter_by(model_id=mid).order_by(
            orm.DeletionRequest.created_at).first()
        first.created_at = past.replace(tzinfo=None)
        s.add(orm.DeletionRequest(model_id=mid, sample_ids=[7], status="failed", error="solver diverged"))
        s.add(orm.Job(model_id=mid, kind="unlearn", status="running", progress=0.4))
    r = api.client.get(paths.url(paths.ADMIN_MODEL_SUMMARY, model_id=mid), headers=api.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"pending": 2, "batched": 0, "applying": 0, "completed": 0,
                              "failed": 1, "canceled": 0}
    assert body["total"] == 3 and 85 <= body["oldest_pending_age_s"] < 600
    assert [f["error"] for f in body["recent_failures"]] == ["solver diverged"]
    assert [(j["kind"], j["progress"]) for j in body["active_jobs"]] == [("unlearn", 0.4)]


def test_admin_routes_need_the_admin_scope(api):
    mid = api.ready_model()["id"]
    reader = _reader(api)
    for path in (paths.ADMIN_MODEL_SUMMARY, paths.ADMIN_MODEL_VERSIONS):
        url = paths.url(path, model_id=mid)
        assert api.client.get(url).status_code == 401
        assert api.client.get(url, headers=reader).status_code == 403
        assert api.client.get(paths.url(path, model_id="nope"), headers=api.admin).status_code == 404


def test_failed_model_has_empty_queue_versions_and_budget(api):
    mid = api.model()["id"]
    with session_scope() as s:
        row = s.get(orm.Model, mid)
        row.status, row.error = "failed", "training diverged"
    summary = api.client.get(paths.url(paths.ADMIN_MODEL_SUMMARY, model_id=mid), headers=api.admin).json()
    assert summary["total"] == 0 and summary["oldest_pending_age_s"] is None
    page = api.client.get(paths.url(paths.ADMIN_MODEL_VERSIONS, model_id=mid), headers=api.admin).json()
    assert page == {"total": 0, "limit": 50, "offset": 0, "items": []}
    url = paths.url(paths.ADMIN_MODEL_VERSIONS, model_id=mid)
    far = api.client.get(url, params={"offset": 2**63 - 1}, headers=api.admin)
    assert far.status_code == 200 and far.json()["items"] == []
    for beyond in (2**63, 10**20):  # past a database integer: the caller's mistake, not a 500
        got = api.client.get(url, params={"offset": beyond}, headers=api.admin)
        assert got.status_code == 422 and "offset" in got.json()["detail"]
    assert api.client.get(f"/v1/models/{mid}/budget", headers=api.admin).json()["rows"] == []


def test_versions_page_paginates_1000_versions_and_verifies_signatures(api):
    mid = api.ready_model()["id"]
    with session_scope() as s:
        for n in range(1000):
            sha = hashlib.sha256(str(n).encode()).hexdigest()
            cert = {"version": n, "weights_sha256": sha}
            if n >= 998:
                cert = signing.sign_certificate(cert, api.settings)
            if n == 998:
                sha = "0" * 64  # the certificate names another file
            s.add(orm.Version(model_id=mid, number=n, lineage=0, kind="unlearned" if n else "trained",
                              sha256=sha, size_bytes=10, certificate=cert,
                              metrics={"accuracy": {"forget": 0.5, "retain": 0.9, "test": 0.8}}))
    url = paths.url(paths.ADMIN_MODEL_VERSIONS, model_id=mid)
    first = api.client.get(url, headers=api.admin).json()
    assert first["total"] == 1000 and len(first["items"]) == 50
    assert [v["number"] for v in first["items"][:3]] == [999, 998, 997]
    status = {v["number"]: v["verification"]["status"] for v in first["items"]}
    assert status[999] == "OK" and status[998] == "FAIL" and status[997] == "FAIL"
    assert "weights_sha256" in first["items"][1]["verification"]["detail"]
    assert "no signature" in first["items"][2]["verification"]["detail"]
    last = api.client.get(url, params={"limit": 100, "offset": 950}, headers=api.admin).json()
    assert [v["number"] for v in last["items"]] == list(range(49, -1, -1))
    assert api.client.get(url, params={"limit": 0}, headers=api.admin).status_code == 422
    # the public list keeps its default shape
    public = api.client.get(f"/v1/models/{mid}/versions", headers=api.admin).json()
    assert isinstance(public, list) and len(public) == 1000
