"""A worker killed with SIGKILL in the middle of an unlearning job, on real PostgreSQL and Redis:
a new worker's reaper finds the job by its stale heartbeat and runs it again; the requests
complete, exactly one new version exists and the ledger has exactly one new row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from service_harness import ROOT, LiveService

PG_URL = os.environ.get("LETHE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("LETHE_TEST_REDIS_URL")
if not (PG_URL and REDIS_URL):
    pytest.skip("PostgreSQL/Redis not configured", allow_module_level=True)


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_sigkill_mid_job_then_a_new_worker_finishes_it(tmp_path: Path, fresh_database: str) -> None:
    env = os.environ | {"LETHE_HOME": str(tmp_path / "home"), "LETHE_DATABASE_URL": fresh_database,
                        "LETHE_BROKER_URL": REDIS_URL, "LETHE_WORKER_THREADS": "1",
                        "LETHE_JOB_STALE_SECONDS": "4"}
    service = LiveService(tmp_path / "home", {k: env[k] for k in (
        "LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_JOB_STALE_SECONDS")}, workers=0)
    env["LETHE_BOOTSTRAP_ADMIN_KEY"] = service.key
    first = _worker(env, tmp_path / "worker1.log")
    second = None
    engine = create_engine(fresh_database)
    try:
        http = service.http
        dataset = http.post("/v1/datasets", json={"name": "digits", "source": "digits"}).json()
        model_id = http.post("/v1/models", json={
            "name": "slow-unlearn", "dataset_id": dataset["id"], "architecture": "mlp",
            "training": {"epochs": 5, "batch_size": 64},
            # A deep LiSSA run: the unlearning job takes long enough to be killed midway.
            # (λ = 1 keeps H + λI positive definite on this small net over so many steps.)
            "certification": {"solver": "lissa", "depth": 40000, "repeats": 10, "damping": 1.0,
                              "noise_std": 0.01},
            "batching": {"max_samples": 5, "max_wait_seconds": 600},
        }).json()["id"]
        service.wait_for(f"/v1/models/{model_id}", lambda m: m["status"] == "ready", 120)
        request = http.post(f"/v1/models/{model_id}/deletion-requests",
                            json={"sample_ids": ["1", "2", "3", "4", "5"]})
        assert request.status_code == 202, request.text
        deadline = time.monotonic() + 60
        while True:  # wait until the unlearning job is running, then kill its worker
            with engine.connect() as conn:
                running = conn.execute(text(
                    "SELECT count(*) FROM jobs WHERE kind = 'unlearn' AND status = 'running'")).scalar_one()
            if running:
                break
            assert time.monotonic() < deadline, "the unlearning job never started"
            time.sleep(0.2)
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        second = _worker(env, tmp_path / "worker2.log")
        done = service.wait_for(request.headers["Location"],
                                lambda r: r["status"] in ("completed", "failed"), 240)
        assert done["status"] == "completed" and done["version"] == 1, (
            done, (tmp_path / "worker2.log").read_text()[-3000:])
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT number, kind FROM versions WHERE model_id = :m ORDER BY number"),
                                    {"m": model_id}).all()
            ledger = conn.execute(text("SELECT count(*) FROM ledger WHERE model_id = :m AND kind = 'unlearned'"),
                                  {"m": model_id}).scalar_one()
            attempts = conn.execute(text("SELECT attempts FROM jobs WHERE kind = 'unlearn' AND model_id = :m"),
                                    {"m": model_id}).scalar_one()
        assert [tuple(v) for v in versions] == [(0, "trained"), (1, "unlearned")]
        assert ledger == 1 and attempts == 2
    finally:
        engine.dispose()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        service.stop()
