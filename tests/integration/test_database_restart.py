"""The database restarted (``pg_ctl stop -m fast``, then start) while the API takes deletion
requests from concurrent clients (issue 4 §4).

Runs against a PostgreSQL cluster of its own (the shared server must not be stopped), so it needs
the server binaries (``initdb``, ``pg_ctl``), not ``LETHE_TEST_POSTGRES_URL``; without them it
skips, or fails under ``LETHE_REQUIRE_INTEGRATION=1``.

What a client sees: 202, or 503 problem+json with ``Retry-After``; never a 500, never a dropped
connection. A 503 is ambiguous in one case: the COMMIT reached the server but its answer did not
come back (the connection died in between), so the request may be stored. The client resolves it
the way :class:`app.client.LetheClient` does, by retrying with the same ``Idempotency-Key`` until
it gets an answer: each logical request then ends with exactly one stored row, which the retry's
202 names (a replay if the first attempt had committed). Clients that send no key do not retry;
their 503s are counted, and each row they left must be one of those 503s.

Afterwards SQL checks that nothing is half-written: every stored key holds its answer and names
a stored request, every request has its ids, every sealed job has requests, every batched request
a job; and the same API process (no restart) accepts requests again.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from service_harness import LiveService, ThrowawayPostgres, postgres_bin_dir

REQUIRED = os.environ.get("LETHE_REQUIRE_INTEGRATION") == "1"
CLIENTS_WITH_KEYS = 6
CLIENTS_WITHOUT_KEYS = 2
OK_BEFORE_STOP = 40
DOWN_S = 1.5
OK_AFTER_START = 40


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql"
        if REQUIRED:
            pytest.fail(f"LETHE_REQUIRE_INTEGRATION=1 but {message}")
        pytest.skip(message)
    cluster = ThrowawayPostgres(bin_dir)
    yield cluster
    cluster.destroy()


@dataclass
class Outcome:
    """What one client saw: per logical request, its attempts' statuses and final answer."""

    keyed: dict[str, tuple[list[int], str]] = field(default_factory=dict)  # key -> (ids, id)
    keyless_accepted: dict[str, list[int]] = field(default_factory=dict)  # id -> ids
    keyless_unavailable: int = 0
    statuses: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    replays: int = 0  # retries answered from a first attempt that had committed


def _client(service: LiveService, model_id: str, n: int, with_key: bool, seed: int,
            stop: threading.Event, out: Outcome) -> None:
    rng = random.Random(seed)
    url = f"/v1/models/{model_id}/deletion-requests"
    with httpx.Client(base_url=service.http.base_url, timeout=30,
                      headers=dict(service.http.headers)) as http:
        while not stop.is_set():
            ids = sorted(rng.sample(range(n), rng.randint(1, 4)))
            key = uuid.uuid4().hex if with_key else None
            deadline = time.monotonic() + 60
            while True:
                try:
                    answer = http.post(url, json={"sample_ids": [str(i) for i in ids]},
                                       headers={"Idempotency-Key": key} if key else {})
                except httpx.TransportError as exc:
                    out.bad.append(f"transport error: {exc!r}")
                    return
                out.statuses.append(answer.status_code)
                if answer.status_code == 202:
                    out.accepted_at.append(time.monotonic())
                    out.replays += answer.headers.get("Idempotent-Replayed") == "true"
                    if key:
                        out.keyed[key] = (ids, answer.json()["id"])
                    else:
                        out.keyless_accepted[answer.json()["id"]] = ids
                    break
                if answer.status_code != 503:
                    out.bad.append(f"{answer.status_code}: {answer.text[:300]}")
                    return
                if (answer.headers.get("content-type") != "application/problem+json"
                        or "Retry-After" not in answer.headers
                        or answer.json().get("status") != 503):
                    out.bad.append(f"a 503 that is not problem+json with Retry-After: "
                                   f"{answer.headers} {answer.text[:300]}")
                    return
                time.sleep(0.05)
                if key is None:
                    out.keyless_unavailable += 1
                    break
                if time.monotonic() > deadline:
                    out.bad.append(f"key {key}: still 503 after 60 s")
                    return


def _accepted(outcomes: list[Outcome]) -> int:
    return sum(len(o.accepted_at) for o in outcomes)


def _wait_for_accepted(outcomes: list[Outcome], at_least: int, timeout_s: float,
                       service: LiveService) -> None:
    deadline = time.monotonic() + timeout_s
    while _accepted(outcomes) < at_least:
        assert time.monotonic() < deadline, (
            f"only {_accepted(outcomes)} of {at_least} requests accepted; "
            f"{[o.bad for o in outcomes]}\n{service.log()}")
        time.sleep(0.05)


def test_requests_are_stored_whole_or_refused_with_503_across_a_restart(
        tmp_path: Path, postgres: ThrowawayPostgres) -> None:
    service = LiveService(tmp_path / "home", {"LETHE_DATABASE_URL": postgres.url}, workers=0)
    engine = create_engine(postgres.url)
    stop = threading.Event()
    outcomes = [Outcome() for _ in range(CLIENTS_WITH_KEYS + CLIENTS_WITHOUT_KEYS)]
    threads: list[threading.Thread] = []
    try:
        dataset = service.http.post("/v1/datasets", json={"name": "digits", "source": "digits"})
        assert dataset.status_code == 201, dataset.text
        model_id = service.http.post("/v1/models", json={
            "name": "restart", "dataset_id": dataset.json()["id"], "architecture": "logreg",
            # Small batches: the intake path seals jobs while the database goes away.
            "batching": {"max_samples": 20, "max_wait_seconds": 3600},
        }).json()["id"]
        with engine.begin() as conn:  # as if trained: intake needs no worker
            conn.execute(text("UPDATE models SET status = 'ready', current_version = 0 "
                              "WHERE id = :m"), {"m": model_id})
        api_pid = service.proc.pid
        threads = [threading.Thread(target=_client, args=(
            service, model_id, int(dataset.json()["n"]), i < CLIENTS_WITH_KEYS, i, stop, out))
            for i, out in enumerate(outcomes)]
        for thread in threads:
            thread.start()

        _wait_for_accepted(outcomes, OK_BEFORE_STOP, 60, service)
        postgres.stop("fast")
        time.sleep(DOWN_S)
        postgres.start()
        restarted_at = time.monotonic()
        _wait_for_accepted(outcomes, _accepted(outcomes) + OK_AFTER_START, 60, service)
        stop.set()
        for thread in threads:
            thread.join(90)

        assert [bad for o in outcomes for bad in o.bad] == []
        statuses = [s for o in outcomes for s in o.statuses]
        assert set(statuses) == {202, 503}, "the restart was never seen as a 503"
        assert sum(1 for o in outcomes for t in o.accepted_at if t > restarted_at) >= OK_AFTER_START
        assert service.proc.poll() is None and service.proc.pid == api_pid  # never restarted

        keyed = {k: v for o in outcomes for k, v in o.keyed.items()}
        keyless = {k: v for o in outcomes for k, v in o.keyless_accepted.items()}
        keyless_503 = sum(o.keyless_unavailable for o in outcomes)
        engine.dispose()  # its pooled connections died with the server
        with engine.connect() as conn:
            stored = {row.id: row for row in conn.execute(text(
                "SELECT id, sample_ids, status, job_id FROM deletion_requests"))}
            keys = {row.key: row for row in conn.execute(text(
                "SELECT key, status_code, response_body FROM idempotency_keys"))}
            empty_jobs = conn.execute(text(
                "SELECT count(*) FROM jobs j WHERE j.kind = 'unlearn' AND NOT EXISTS "
                "(SELECT 1 FROM deletion_requests r WHERE r.job_id = j.id)")).scalar_one()
            n_jobs = conn.execute(text("SELECT count(*) FROM jobs WHERE kind = 'unlearn'")).scalar_one()

        # Each keyed logical request: one key row holding its 202, naming a whole stored request.
        assert set(keys) == set(keyed)
        for key, (ids, request_id) in keyed.items():
            assert keys[key].status_code == 202 and keys[key].response_body["id"] == request_id
            assert stored[request_id].sample_ids == ids
        for request_id, ids in keyless.items():
            assert stored[request_id].sample_ids == ids
        # Rows nobody saw accepted: only keyless 503s whose COMMIT had gone through.
        unacknowledged = set(stored) - {v[1] for v in keyed.values()} - set(keyless)
        assert len(unacknowledged) <= keyless_503
        assert all(stored[r].sample_ids for r in stored)
        assert all(row.job_id is not None for row in stored.values() if row.status == "batched")
        assert empty_jobs == 0 and n_jobs > 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)
        engine.dispose()
        service.stop()
