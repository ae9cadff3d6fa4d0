"""The happy path of the HTTP contract (issue 2), up to what a worker would do."""

from __future__ import annotations

import base64
import hashlib

from app.db import models as orm
from app.db.session import session_scope


def test_healthz_needs_no_key(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_register_dataset_create_model_queues_training(api):
    ds = api.dataset()
    assert (ds["n"], ds["n_test"], ds["num_features"], ds["num_classes"]) == (1437, 360, 64, 10)
    assert len(ds["checksum_sha256"]) == 64
    assert api.client.get(f"/v1/datasets/{ds['id']}", headers=api.admin).json() == ds
    assert [d["id"] for d in api.client.get("/v1/datasets", headers=api.admin).json()] == [ds["id"]]

    r = api.client.post("/v1/models", headers=api.admin, json={
        "name": "mlp", "dataset_id": ds["id"], "architecture": "mlp",
        "training": {"epochs": 3}, "certification": {"solver": "cg"},
        "batching": {"max_samples": 10, "max_wait_seconds": 5},
    })
    assert r.status_code == 202, r.text
    model = r.json()
    assert r.headers["location"] == f"/v1/models/{model['id']}"
    assert model["status"] == "training" and model["current_version"] is None
    assert model["training"]["epochs"] == 3 and model["training"]["lr"] == 1e-3
    assert model["certification"]["solver"] == "cg"
    assert model["certification"]["noise_std"] == 0.01
    assert model["batching"] == {"max_samples": 10, "max_wait_seconds": 5.0}

    got = api.client.get(f"/v1/models/{model['id']}", headers=api.admin)
    assert got.status_code == 200 and got.json()["status"] == "training"
    assert got.json()["train_job_id"] == model["train_job_id"]
    listed = api.client.get("/v1/models", headers=api.admin).json()
    assert [m["id"] for m in listed] == [model["id"]]

    job = api.client.get(f"/v1/jobs/{model['train_job_id']}", headers=api.admin).json()
    assert (job["kind"], job["status"], job["model_id"]) == ("train", "queued", model["id"])
    assert (job["attempts"], job["redispatches"], job["started_at"]) == (0, 0, None)
    assert job["enqueued_at"] is not None and job["enqueued_at"] >= job["created_at"]
    assert api.broker_messages() == [
        {"task": "lethe.train", "args": [model["train_job_id"]], "eta": None}
    ]
    with session_scope() as s:
        row = s.get(orm.Job, model["train_job_id"])
        assert row is not None and row.celery_task_id  # recorded after the enqueue


def test_target_epsilon_alone_clears_default_noise(api):
    model = api.model(certification={"target_epsilon": 2.0})
    assert model["certification"]["target_epsilon"] == 2.0
    assert model["certification"]["noise_std"] is None


def test_deletion_request_is_accepted_and_pollable(api):
    model = api.ready_model(batching={"max_samples": 100, "max_wait_seconds": 30})
    r = api.forget(model["id"], ["0", "5", "1436"])
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/deletion-requests/{body['id']}"
    assert (body["status"], body["version"], body["sample_count"]) == ("pending", None, 3)
    polled = api.client.get(r.headers["location"], headers=api.admin)
    assert polled.status_code == 200 and polled.json() == body
    with session_scope() as s:
        row = s.get(orm.DeletionRequest, body["id"])
        assert row is not None and row.sample_ids == [0, 5, 1436]
    # Pending: a seal check is scheduled for when max_wait_seconds has passed.
    seal = [m for m in api.broker_messages() if m["task"] == "lethe.seal_due"]
    assert [m["args"] for m in seal] == [[model["id"]]]
    assert seal[0]["eta"] is not None


def test_versions_list_get_download_and_certificate(api):
    model = api.ready_model()
    data0, data1 = b"weights-v0" * 50, b"weights-v1" * 70
    api.add_version(model["id"], 0, data0, kind="trained")
    sha1 = api.add_version(model["id"], 1, data1, certificate={"method": "newton-lissa",
                                                               "weights_sha256": "x"})
    base = f"/v1/models/{model['id']}/versions"

    listed = api.client.get(base, headers=api.admin).json()
    assert [(v["number"], v["kind"], v["size"]) for v in listed] == [
        (0, "trained", len(data0)), (1, "unlearned", len(data1))]
    assert listed[1]["sha256"] == sha1 == hashlib.sha256(data1).hexdigest()
    assert listed[1]["parent_number"] == 0 and listed[1]["lineage"] == 0
    assert listed[1]["created_at"].endswith("Z")
    assert api.client.get(f"{base}/1", headers=api.admin).json() == listed[1]

    r = api.client.get(f"{base}/1/download", headers=api.admin)
    assert r.status_code == 200 and r.content == data1
    assert r.headers["content-length"] == str(len(data1))
    assert r.headers["etag"] == f'"{sha1}"'
    b64 = base64.b64encode(bytes.fromhex(sha1)).decode()
    assert r.headers["repr-digest"] == f"sha-256=:{b64}:"
    assert r.headers["content-type"] == "application/octet-stream"

    part = api.client.get(f"{base}/1/download", headers={**api.admin, "Range": "bytes=10-29"})
    assert part.status_code == 206
    assert part.content == data1[10:30]
    assert part.headers["content-range"] == f"bytes 10-29/{len(data1)}"
    suffix = api.client.get(f"{base}/1/download", headers={**api.admin, "Range": "bytes=-5"})
    assert suffix.status_code == 206 and suffix.content == data1[-5:]
    for bad in ("bytes=abc", "bytes=10-5", "items=0-1", "bytes"):  # malformed: a 400 problem
        r = api.client.get(f"{base}/1/download", headers={**api.admin, "Range": bad})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
        assert bad in r.json()["detail"] and r.json()["field"] == "Range"
    past = api.client.get(f"{base}/1/download",
                          headers={**api.admin, "Range": f"bytes={len(data1)}-"})
    assert past.status_code == 416 and past.headers["content-type"] == "application/problem+json"
    assert past.headers["content-range"] == f"bytes */{len(data1)}"
    assert past.json()["size"] == len(data1)
    stale = api.client.get(f"{base}/1/download",  # If-Range names another file: the whole file
                           headers={**api.admin, "Range": "bytes=abc", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data1

    head = api.client.head(f"{base}/1/download", headers=api.admin)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data1))
    cached = api.client.get(f"{base}/1/download", headers={**api.admin, "If-None-Match": f'"{sha1}"'})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == f'"{sha1}"'
    other = api.client.get(f"{base}/1/download", headers={**api.admin, "If-None-Match": '"abc"'})
    assert other.status_code == 200 and other.content == data1

    cert = api.client.get(f"{base}/1/certificate", headers=api.admin)
    assert cert.status_code == 200
    assert cert.json() == {"method": "newton-lissa", "weights_sha256": "x"}


def test_download_of_a_missing_file_or_version_is_404(api):
    model = api.ready_model()
    sha = api.add_version(model["id"], 0, b"abc", kind="trained")
    api.settings.artifacts_dir.joinpath(sha[:2], f"{sha}.safetensors").unlink()
    base = f"/v1/models/{model['id']}/versions"
    for path in (f"{base}/0/download", f"{base}/7", f"{base}/7/download", f"{base}/7/certificate"):
        r = api.client.get(path, headers=api.admin)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"


def test_budget_reports_the_ledger(api):
    model = api.ready_model()
    empty = api.client.get(f"/v1/models/{model['id']}/budget", headers=api.admin).json()
    assert {k: empty[k] for k in ("model_id", "lineage", "releases_in_lineage", "cumulative_epsilon",
                                  "cumulative_delta", "accountant", "rows")} == {
        "model_id": model["id"], "lineage": 0, "releases_in_lineage": 0,
        "cumulative_epsilon": 0.0, "cumulative_delta": 0.0, "accountant": None, "rows": []}
    assert empty["caps"]["max_releases"] == 10 and empty["remaining"]["releases"] == 10
    assert empty["projection"] == {"release_size": None, "releases_that_fit": None}
    common = dict(model_id=model["id"], retain_size=1437, accountant="pld")
    with session_scope() as s:
        s.add_all([
            orm.LedgerEntry(version=0, lineage=0, kind="trained", m=0, sensitivity=0.0,
                            noise_std=0.0, epsilon=0.0, delta=0.0, cumulative_epsilon=0.0,
                            cumulative_delta=0.0, **common),
            orm.LedgerEntry(version=2, lineage=0, kind="unlearned", m=5, sensitivity=40.0,
                            noise_std=0.5, epsilon=8.0, delta=1e-5, cumulative_epsilon=11.0,
                            cumulative_delta=2e-5, **common),
            orm.LedgerEntry(version=1, lineage=0, kind="unlearned", m=3, sensitivity=40.0,
                            noise_std=0.5, epsilon=8.0, delta=1e-5, cumulative_epsilon=8.0,
                            cumulative_delta=1e-5, **common),
        ])
    got = api.client.get(f"/v1/models/{model['id']}/budget", headers=api.admin).json()
    assert [r["version"] for r in got["rows"]] == [0, 1, 2]
    assert (got["lineage"], got["releases_in_lineage"]) == (0, 2)
    assert (got["cumulative_epsilon"], got["cumulative_delta"]) == (11.0, 2e-5)
    assert got["accountant"] == "pld"
    assert got["rows"][2]["m"] == 5 and got["rows"][2]["noise_std"] == 0.5
    assert got["consumed"] == {"epsilon": 11.0, "delta": 2e-5, "releases": 2,
                               "forgotten_fraction": 8 / 1437}
    assert got["remaining"]["releases"] == 8
    # Repeating the newest release (m = 5, σ/Δ = 1/80) hits max_releases = 10 before any other cap.
    assert got["projection"] == {"release_size": 5, "releases_that_fit": 8}
    assert [api.client.get(f"/v1/models/{model['id']}/budget", headers=api.admin).json()
            for _ in range(3)] == [got] * 3  # a pure read

    with session_scope() as s:  # a retrain starts a new lineage and resets the figures
        s.add(orm.LedgerEntry(version=3, lineage=1, kind="retrained", m=8, sensitivity=0.0,
                              noise_std=0.0, epsilon=0.0, delta=0.0, cumulative_epsilon=0.0,
                              cumulative_delta=0.0, **common))
    got = api.client.get(f"/v1/models/{model['id']}/budget", headers=api.admin).json()
    assert (got["lineage"], got["releases_in_lineage"], got["cumulative_epsilon"]) == (1, 0, 0.0)


def test_samples_already_forgotten_complete_at_once(api):
    model = api.ready_model()
    api.add_forgotten(model["id"], [3, 4], version=1)
    api.add_forgotten(model["id"], [9], version=2)
    before = api.counts()
    r = api.forget(model["id"], ["9", "3"])
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["version"]) == ("completed", 2)
    assert api.client.get(r.headers["location"], headers=api.admin).json()["status"] == "completed"
    after = api.counts()
    assert after["deletion_requests"] == before["deletion_requests"] + 1
    assert after["jobs"] == before["jobs"]  # nothing to do for a worker

    partly = api.forget(model["id"], ["3", "10"])
    assert partly.json()["status"] == "pending"
    with session_scope() as s:
        row = s.get(orm.DeletionRequest, partly.json()["id"])
        assert row is not None and row.sample_ids == [3, 10]


def test_job_answers_show_durations_but_never_a_traceback(api):
    model = api.model()
    with session_scope() as s:
        job = s.get(orm.Job, model["train_job_id"])
        assert job is not None
        job.status, job.error = "failed", "training diverged"
        job.timings = {"train_s": 1.5, "traceback": 'Traceback (most recent call last):\n  File "x"'}
    got = api.client.get(f"/v1/jobs/{model['train_job_id']}", headers=api.admin).json()
    assert (got["status"], got["error"], got["timings"]) == ("failed", "training diverged",
                                                             {"train_s": 1.5})


def test_openapi_describes_every_route(client):
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    from app.api import paths as p

    for route in (p.DATASETS, p.MODELS, p.MODEL, p.MODEL_RETRAIN, p.MODEL_DELETION_REQUESTS,
                  p.DELETION_REQUEST, p.JOB, p.MODEL_VERSIONS, p.MODEL_VERSION,
                  p.MODEL_VERSION_DOWNLOAD, p.MODEL_VERSION_CERTIFICATE, p.MODEL_BUDGET):
        assert route in paths, route
    assert "HTTPBearer" in spec.json()["components"]["securitySchemes"]
