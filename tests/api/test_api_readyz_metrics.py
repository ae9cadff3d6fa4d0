"""``/readyz`` (each component reported; 503 problem+json naming what is missing) and
``/metrics`` (request counts by route and status; figures read from the database at scrape)."""

from __future__ import annotations

from datetime import timedelta

from app.db import models as orm
from app.db.session import session_scope
from app.services import readiness


class _Control:
    def __init__(self, replies):
        self.replies = replies

    def broadcast(self, command, reply, timeout):
        assert command == "lethe_runtime" and reply
        if isinstance(self.replies, Exception):
            raise self.replies
        return self.replies


class _Producer:
    def __init__(self, replies, broker_error=None):
        self.control = _Control(replies)
        self.broker_error = broker_error

    def connection_for_write(self):
        error = self.broker_error

        class _Conn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def ensure_connection(self, **_kw):
                if error:
                    raise error

        return _Conn()


GPU_WORKER = {"device": "cuda:1", "device_name": "NVIDIA H100", "torch": "2.13.0",
              "cuda": "12.8", "cudnn": 91000, "threads": 1, "deterministic": True}


def test_ready_when_everything_answers(api, monkeypatch):
    monkeypatch.setattr(readiness, "_producer",
                        lambda: _Producer([{"w2@host": GPU_WORKER},
                                           {"w1@host": {"error": "KeyError('lethe_runtime')"}}]))
    r = api.client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    # Each worker with its device; one that does not know the command counts, device unknown.
    assert body["components"]["workers"] == {
        "status": "ok", "detail": "2 worker(s) answered", "count": 2,
        "names": ["w1@host", "w2@host"],
        "workers": [{"name": "w1@host", "device": "unknown", "device_name": None, "torch": None,
                     "cuda": None},
                    {"name": "w2@host", "device": "cuda:1", "device_name": "NVIDIA H100",
                     "torch": "2.13.0", "cuda": "12.8"}]}


def test_503_names_the_missing_workers(api, monkeypatch):
    monkeypatch.setattr(readiness, "_producer", lambda: _Producer([]))
    r = api.client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["missing"] == ["workers"] and r.headers["Retry-After"]


def test_503_names_a_broken_broker_and_database(api, monkeypatch):
    monkeypatch.setattr(readiness, "_producer",
                        lambda: _Producer([], broker_error=ConnectionRefusedError("refused")))

    def no_db():
        raise RuntimeError("db down")

    monkeypatch.setattr(readiness, "session_scope", no_db)
    r = api.client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["missing"] == ["database", "broker", "workers"]
    assert "refused" in body["components"]["broker"]["detail"]
    assert "not checked" in body["components"]["workers"]["detail"]


def test_metrics_count_requests_and_read_the_database(api):
    model = api.ready_model()
    api.forget(model["id"], ["1"])
    api.forget(model["id"], ["2"])
    api.client.get("/v1/models/nope", headers=api.admin)
    api.client.get("/no/such/path")
    with session_scope() as s:
        t0 = orm.utcnow()
        job = orm.Job(model_id=model["id"], kind="unlearn", status="succeeded",
                      started_at=t0, finished_at=t0 + timedelta(seconds=3), redispatches=2)
        s.add(job)
        for version, m, eps in ((1, 30, 1.5), (2, 7, 2.25)):
            s.add(orm.LedgerEntry(model_id=model["id"], version=version, lineage=0,
                                  kind="unlearned", m=m, retain_size=1000, sensitivity=0.1,
                                  noise_std=0.1, epsilon=1.0, delta=1e-6, cumulative_epsilon=eps,
                                  cumulative_delta=2e-6, accountant="rdp"))
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = "/v1/models/{model_id}/deletion-requests"
    assert f'lethe_http_requests_total{{method="POST",route="{route}",status="202"}} 2.0' in text
    assert 'lethe_http_requests_total{method="GET",route="/v1/models/{model_id}",status="404"} 1.0' in text
    assert 'lethe_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'lethe_deletion_requests{status="pending"} 2.0' in text
    assert 'lethe_deletion_requests{status="canceled"} 0.0' in text
    assert 'lethe_jobs{status="succeeded"} 2.0' in text  # the training job and the one above
    assert 'lethe_job_redispatches_total 2.0' in text  # its message was lost twice
    assert 'lethe_batch_size_samples_count 2.0' in text
    assert 'lethe_batch_size_samples_bucket{le="10.0"} 1.0' in text
    assert 'lethe_batch_size_samples_sum 37.0' in text
    assert 'lethe_job_duration_seconds_bucket{kind="unlearn",le="5.0"} 1.0' in text
    assert f'lethe_budget_epsilon_consumed{{model_id="{model["id"]}"}} 2.25' in text
