"""Fixtures of the integration suite (real PostgreSQL and Redis, started by ``.ci/run``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("LETHE_TEST_POSTGRES_URL")


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new database per test on the CI server; dropped afterwards."""
    if not PG_URL:
        pytest.skip("LETHE_TEST_POSTGRES_URL is not set")
    name = f"lethe_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
