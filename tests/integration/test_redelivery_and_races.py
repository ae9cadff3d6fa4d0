"""Redelivery and races on real PostgreSQL and Redis with real worker processes: a visibility
timeout shorter than the job, two workers racing for one model's jobs, and a queued job whose
message was lost (the queue purged), which a worker's reaper publishes again. Either way every
version is published once, numbers are unique and gap-free, one ledger row per version."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis import Redis
from sqlalchemy import create_engine, text

from app.broker import QUEUE, TASK_UNLEARN_BATCH, make_celery
from app.settings import Settings

from service_harness import ROOT, LiveService

PG_URL = os.environ.get("LETHE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("LETHE_TEST_REDIS_URL")
if not (PG_URL and REDIS_URL):
    pytest.skip("PostgreSQL/Redis not configured", allow_module_level=True)

SLOW_LISSA = {"solver": "lissa", "depth": 15000, "repeats": 10, "damping": 1.0, "noise_std": 0.01}
# kombu restores unacknowledged Redis messages from an idle worker about every 10 s, so the
# visibility test's job must outlast that for the redelivery to happen while it runs.
SLOWER_LISSA = SLOW_LISSA | {"depth": 60000}


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _start(tmp_path: Path, database: str, workers: int, **extra: str) -> tuple[LiveService, list]:
    env = {"LETHE_DATABASE_URL": database, "LETHE_BROKER_URL": REDIS_URL, **extra}
    service = LiveService(tmp_path / "home", env, workers=0)
    full = os.environ | {"LETHE_HOME": str(tmp_path / "home"), "LETHE_WORKER_THREADS": "1",
                         "LETHE_BOOTSTRAP_ADMIN_KEY": service.key} | env
    return service, [_worker(full, tmp_path / f"worker{i}.log") for i in range(workers)]


def _model(service: LiveService, batch: int, certification: dict = SLOW_LISSA) -> str:
    dataset = service.http.post("/v1/datasets", json={"name": "digits", "source": "digits"}).json()
    model_id = service.http.post("/v1/models", json={
        "name": "m", "dataset_id": dataset["id"], "architecture": "mlp",
        "training": {"epochs": 5, "batch_size": 64}, "certification": certification,
        "batching": {"max_samples": batch, "max_wait_seconds": 600},
        "budget": {"max_releases": 100, "max_epsilon": 1e12},
    }).json()["id"]
    service.wait_for(f"/v1/models/{model_id}", lambda m: m["status"] == "ready", 120)
    return model_id


def _rows(database: str, model_id: str) -> tuple[list[tuple[int, str]], list[int], int]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            versions = [tuple(r) for r in conn.execute(text(
                "SELECT number, kind FROM versions WHERE model_id = :m ORDER BY number"), {"m": model_id})]
            ledger = [r[0] for r in conn.execute(text(
                "SELECT version FROM ledger WHERE model_id = :m ORDER BY version"), {"m": model_id})]
            overlapping = conn.execute(text(
                "SELECT count(*) FROM jobs a JOIN jobs b ON a.model_id = b.model_id AND a.id < b.id "
                "WHERE a.model_id = :m AND a.kind <> 'train' AND b.kind <> 'train' "
                "AND a.started_at < b.finished_at AND b.started_at < a.finished_at"), {"m": model_id}).scalar_one()
    finally:
        engine.dispose()
    return versions, ledger, overlapping


def _job_row(database: str, model_id: str, kind: str) -> tuple[str, str, int, object]:
    """(id, status, redispatches, enqueued_at) of the model's newest job of this kind."""
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT id, status, redispatches, enqueued_at FROM jobs WHERE model_id = :m "
                "AND kind = :k ORDER BY created_at DESC LIMIT 1"), {"m": model_id, "k": kind}).one())
    finally:
        engine.dispose()


def _stop(service: LiveService, workers: list) -> None:
    for proc in workers:
        proc.terminate()
        proc.wait(30)
    service.stop()


def test_visibility_timeout_shorter_than_the_job(tmp_path: Path, fresh_database: str) -> None:
    """The broker may hand a running job to a second worker (visibility timeout 2 s, shorter than
    the job). kombu restores such messages only on its own schedule, so the test also delivers
    the same task a second time itself while the job runs: either way, one version, one row."""
    service, workers = _start(tmp_path, fresh_database, 2, LETHE_BROKER_VISIBILITY_TIMEOUT_S="2")
    try:
        model_id = _model(service, 5, SLOWER_LISSA)
        answer = service.http.post(f"/v1/models/{model_id}/deletion-requests",
                                   json={"sample_ids": ["1", "2", "3", "4", "5"]})
        engine = create_engine(fresh_database)
        try:
            deadline = time.monotonic() + 60
            while True:
                with engine.connect() as conn:
                    job_id = conn.execute(text(
                        "SELECT id FROM jobs WHERE model_id = :m AND kind = 'unlearn' AND status = 'running'"),
                        {"m": model_id}).scalar()
                if job_id:
                    break
                assert time.monotonic() < deadline, "the unlearning job never started"
                time.sleep(0.2)
        finally:
            engine.dispose()
        producer = make_celery(Settings(home=tmp_path / "home", broker_url=REDIS_URL))
        duplicate = producer.send_task(TASK_UNLEARN_BATCH, args=[job_id], queue=QUEUE).id
        done = service.wait_for(answer.headers["Location"], lambda r: r["status"] in ("completed", "failed"), 240)
        assert done["status"] == "completed", done
        versions, ledger, _ = _rows(fresh_database, model_id)
        assert versions == [(0, "trained"), (1, "unlearned")] and ledger == [0, 1]
        logs = "".join(log.read_text() for log in tmp_path.glob("worker*.log"))
        # The second delivery was consumed, and returned at once: the job was running or done.
        assert f"lethe.unlearn_batch[{duplicate}] received" in logs
        assert any(f"lethe.unlearn_batch[{duplicate}] succeeded" in line and line.endswith(("'running'", "'succeeded'"))
                   for line in logs.splitlines())
    finally:
        _stop(service, workers)


def test_two_workers_race_for_one_model(tmp_path: Path, fresh_database: str) -> None:
    service, workers = _start(tmp_path, fresh_database, 2)
    try:
        model_id = _model(service, 3)
        locations = []
        for start in range(0, 12, 3):  # four batches sealed back to back, two workers consuming
            answer = service.http.post(f"/v1/models/{model_id}/deletion-requests",
                                       json={"sample_ids": [str(i) for i in range(start, start + 3)]})
            locations.append(answer.headers["Location"])
        finals = [service.wait_for(loc, lambda r: r["status"] in ("completed", "failed"), 300)
                  for loc in locations]
        assert {r["status"] for r in finals} == {"completed"}
        versions, ledger, overlapping = _rows(fresh_database, model_id)
        assert [n for n, _ in versions] == list(range(len(versions)))  # unique and gap-free
        assert ledger == [n for n, _ in versions]  # one ledger row per version
        assert overlapping == 0  # never two jobs of the model at once
        assert len(versions) >= 2
        engine = create_engine(fresh_database)
        try:
            with engine.connect() as conn:
                parents = dict(conn.execute(text(
                    "SELECT number, parent_number FROM versions WHERE model_id = :m"), {"m": model_id}).all())
        finally:
            engine.dispose()
        # Each batch started from the version before it (a job that ran beside another would
        # have started from an older state and published over its removals).
        assert all(parents[n] == n - 1 for n in parents if n > 0), parents
    finally:
        _stop(service, workers)


def _own_redis_database(url: str, index: int) -> str:
    """The same Redis server, another database: purging this test's queue touches nobody else's."""
    return urlsplit(url)._replace(path=f"/{index}").geturl()


def test_a_queued_job_whose_message_was_lost_is_published_again(tmp_path: Path,
                                                                 fresh_database: str) -> None:
    """The worker is down when the batch is sealed; its message is then purged from Redis. A new
    worker's reaper (re-send after 2 s) publishes it again: the requests complete with exactly
    one new version and one ledger row, and one more duplicate message changes nothing."""
    redis = _own_redis_database(REDIS_URL, 13)
    producer = make_celery(Settings(home=tmp_path / "home", broker_url=redis))
    producer.control.purge()  # what an earlier run may have left
    service, workers = _start(tmp_path, fresh_database, 1, LETHE_BROKER_URL=redis,
                              LETHE_JOB_REDISPATCH_SECONDS="2")
    try:
        model_id = _model(service, 5, {"solver": "lissa", "depth": 200, "repeats": 2})
        for proc in workers:  # no worker consumes the batch's message
            proc.terminate()
            proc.wait(30)
        locations = [service.http.post(f"/v1/models/{model_id}/deletion-requests",
                                       json={"sample_ids": ids}).headers["Location"]
                     for ids in (["1", "2"], ["3", "4", "5"])]
        job_id, status, redispatches, enqueued_at = _job_row(fresh_database, model_id, "unlearn")
        assert (status, redispatches) == ("queued", 0) and enqueued_at is not None
        queue = Redis.from_url(redis)
        assert any(job_id.encode() in m for m in queue.lrange(QUEUE, 0, -1))
        producer.control.purge()  # the batch's message (and the window's timer) lost
        assert not any(job_id.encode() in m for m in queue.lrange(QUEUE, 0, -1))
        queue.close()

        workers.append(_worker(os.environ | {
            "LETHE_HOME": str(tmp_path / "home"), "LETHE_WORKER_THREADS": "1",
            "LETHE_DATABASE_URL": fresh_database, "LETHE_BROKER_URL": redis,
            "LETHE_JOB_REDISPATCH_SECONDS": "2"}, tmp_path / "worker-new.log"))
        finals = [service.wait_for(loc, lambda r: r["status"] in ("completed", "failed"), 120)
                  for loc in locations]
        assert [r["status"] for r in finals] == ["completed", "completed"], finals
        assert {r["version"] for r in finals} == {1}
        versions, ledger, _ = _rows(fresh_database, model_id)
        assert versions == [(0, "trained"), (1, "unlearned")] and ledger == [0, 1]
        _, status, redispatches, _ = _job_row(fresh_database, model_id, "unlearn")
        assert status == "succeeded" and redispatches >= 1
        log = (tmp_path / "worker-new.log").read_text()
        assert f"job {job_id} is still queued long after its message was published" in log

        duplicate = producer.send_task(TASK_UNLEARN_BATCH, args=[job_id], queue=QUEUE).id
        deadline = time.monotonic() + 30
        while f"lethe.unlearn_batch[{duplicate}] succeeded" not in (
                log := (tmp_path / "worker-new.log").read_text()):
            assert time.monotonic() < deadline, log[-3000:]
            time.sleep(0.2)
        assert f"lethe.unlearn_batch[{duplicate}] succeeded" in log and "'succeeded'" in log
        assert _rows(fresh_database, model_id)[:2] == (versions, ledger)
        metrics = service.http.get("/metrics").text
        assert f"lethe_job_redispatches_total {float(redispatches)}" in metrics
    finally:
        _stop(service, workers)
        producer.control.purge()
