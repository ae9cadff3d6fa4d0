"""Fixtures of the integration suite (real PostgreSQL and Redis, started by ``.ci/run``)."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from app.api.main import create_app
from service_harness import PG_ADMIN_KEY, forget_process_state

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


@pytest.fixture
def client(fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API in this process on a fresh PostgreSQL database, admin key ``PG_ADMIN_KEY``."""
    monkeypatch.setenv("LETHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LETHE_DATABASE_URL", fresh_database)
    monkeypatch.setenv("LETHE_BOOTSTRAP_ADMIN_KEY", PG_ADMIN_KEY)
    monkeypatch.delenv("LETHE_BROKER_URL", raising=False)
    forget_process_state()
    with TestClient(create_app()) as test_client:
        yield test_client
    forget_process_state()
