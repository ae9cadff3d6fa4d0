"""The same HTTP flow against real PostgreSQL and Redis (started by ``.ci/run``).

Set LETHE_TEST_POSTGRES_URL and LETHE_TEST_REDIS_URL to run it; with LETHE_REQUIRE_INTEGRATION=1
(as in CI) a missing server is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest
import redis
from sqlalchemy import create_engine, text

from service_harness import digits_flow

PG_URL = os.environ.get("LETHE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("LETHE_TEST_REDIS_URL")
REQUIRED = os.environ.get("LETHE_REQUIRE_INTEGRATION") == "1"

if not (PG_URL and REDIS_URL):
    if REQUIRED:
        raise RuntimeError("LETHE_REQUIRE_INTEGRATION=1 but LETHE_TEST_POSTGRES_URL / LETHE_TEST_REDIS_URL are unset")
    pytest.skip("PostgreSQL/Redis not configured (LETHE_TEST_POSTGRES_URL, LETHE_TEST_REDIS_URL)",
                allow_module_level=True)


def test_flow_on_postgres_and_redis(live_service, fresh_database: str) -> None:
    redis.Redis.from_url(REDIS_URL).ping()
    service = live_service(LETHE_DATABASE_URL=fresh_database, LETHE_BROKER_URL=REDIS_URL)
    flow = digits_flow(service)

    # The rows really are in PostgreSQL: one version per publish, one ledger row each.
    engine = create_engine(fresh_database)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT number, kind FROM versions WHERE model_id = :m ORDER BY number"),
                                {"m": flow["model_id"]}).all()
        ledger = conn.execute(text("SELECT count(*) FROM ledger WHERE model_id = :m"),
                              {"m": flow["model_id"]}).scalar_one()
        forgotten = conn.execute(text("SELECT count(*) FROM forgotten_samples WHERE model_id = :m"),
                                 {"m": flow["model_id"]}).scalar_one()
    engine.dispose()
    assert [tuple(v) for v in versions] == [(0, "trained"), (1, "unlearned")]
    assert ledger == 2 and forgotten == 30
