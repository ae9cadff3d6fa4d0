"""``/readyz`` and ``/metrics`` on a real ``lethe serve``: ready once a worker answers a ping;
503 naming the workers when none runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

from service_harness import LiveService


def _ready(service: LiveService, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        r = service.http.get("/readyz", headers={"Authorization": ""})
        if r.status_code == 200 or time.monotonic() > deadline:
            return {"status_code": r.status_code, "body": r.json()}
        time.sleep(0.5)


def test_ready_with_a_worker_then_metrics(tmp_path: Path) -> None:
    service = LiveService(tmp_path / "home", {})
    try:
        answer = _ready(service)
        assert answer["status_code"] == 200, (answer, service.log())
        components = answer["body"]["components"]
        assert {k: v["status"] for k, v in components.items()} == {
            "database": "ok", "broker": "ok", "workers": "ok"}
        assert components["workers"]["count"] >= 1
        # Each worker reports the device it computes on (LETHE_DEVICE=auto: cpu here, cuda:0 on
        # a GPU machine).
        assert all(re.fullmatch(r"cpu|cuda:\d+", w["device"])
                   for w in components["workers"]["workers"]), components["workers"]

        dataset = service.http.post("/v1/datasets", json={"name": "d", "source": "digits"})
        assert dataset.status_code == 201
        text = service.http.get("/metrics").text
        assert 'lethe_http_requests_total{method="POST",route="/v1/datasets",status="201"} 1.0' in text
        assert 'lethe_deletion_requests{status="pending"} 0.0' in text
        assert "lethe_database_up 1.0" in text
    finally:
        service.stop()


def test_not_ready_without_workers(tmp_path: Path) -> None:
    service = LiveService(tmp_path / "home", {}, workers=0)
    try:
        r = service.http.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["missing"] == ["workers"] and "workers" in body["detail"]
        assert body["components"]["database"]["status"] == "ok"
        assert body["components"]["broker"]["status"] == "ok"
    finally:
        service.stop()
