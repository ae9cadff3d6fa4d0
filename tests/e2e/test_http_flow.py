"""End to end on the embedded default: real uvicorn + Celery worker processes, SQLite and the
filesystem broker, real HTTP, the digits dataset, through version 1 and an exact retrain."""

from __future__ import annotations

import hashlib

from service_harness import digits_flow


def test_digits_through_unlearning_and_retrain(live_service) -> None:
    service = live_service()
    flow = digits_flow(service)
    model_id = flow["model_id"]

    # A sample forgotten by version 1 is accepted and completes at once, pointing at version 1.
    again = service.http.post(f"/v1/models/{model_id}/deletion-requests", json={"sample_ids": ["100"]})
    assert again.status_code == 202 and again.json()["status"] == "completed"
    assert again.json()["version"] == 1

    job = service.http.post(f"/v1/models/{model_id}/retrain")
    assert job.status_code == 202, job.text
    done = service.wait_for(f"/v1/jobs/{job.json()['job_id']}", lambda j: j["status"] in ("succeeded", "failed"))
    assert done["status"] == "succeeded", (done, service.log())
    # The job and its certificate record what computed it (LETHE_DEVICE=auto: the CPU here).
    runtime = done["runtime"]
    assert runtime["device"] == "cpu" and runtime["torch"] and runtime["threads"] == 1
    cert = service.http.get(f"/v1/models/{model_id}/versions/2/certificate").json()
    assert cert["runtime"] == runtime
    assert cert["method"] == "retrain" and cert["guarantee"]["epsilon"] == 0.0
    assert cert["forgotten"]["lineage_total"] == 30 and cert["forgotten"]["retain_size"] == 1437 - 30
    blob = service.http.get(f"/v1/models/{model_id}/versions/2/download").content
    assert hashlib.sha256(blob).hexdigest() == cert["weights_sha256"]
    budget = service.http.get(f"/v1/models/{model_id}/budget").json()
    assert [row["kind"] for row in budget["rows"]] == ["trained", "unlearned", "retrained"]
    assert budget["cumulative_epsilon"] == 0.0  # the retrain reset the lineage
