"""Fixtures of the API tests: a fresh ``LETHE_HOME`` per test, the app under TestClient (lifespan
included, so migrations and the bootstrap key run), and helpers that write rows through the ORM
where a worker would. No worker runs here: jobs only land in the filesystem broker's folder."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

with warnings.catch_warnings():
    # starlette >= 1.x nudges towards the httpx2 fork; the httpx client works the same here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from app.api.main import create_app
from app.db import models as orm
from app.db.session import session_scope
from app.settings import Settings, get_settings
from app.storage.artifacts import ArtifactStore
from service_harness import forget_process_state

ADMIN_KEY = "test-admin-key-0123456789abcdef"
ALL_TABLES = (orm.ApiKey, orm.Dataset, orm.Model, orm.Job, orm.Version, orm.DeletionRequest,
              orm.ForgottenSample, orm.LedgerEntry)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("LETHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LETHE_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
    for var in ("LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_DATA_DIR",
                "LETHE_MAX_REQUEST_SAMPLES"):
        monkeypatch.delenv(var, raising=False)
    forget_process_state()
    yield get_settings()
    forget_process_state()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


class Api:
    """Shortcuts over the client and the ORM."""

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    # --- over HTTP ---------------------------------------------------------------------------

    def dataset(self) -> dict[str, Any]:
        r = self.client.post("/v1/datasets", json={"name": "digits", "source": "digits"},
                             headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()

    def model(self, dataset_id: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"name": "m", "dataset_id": dataset_id or self.dataset()["id"],
                "architecture": "logreg", **fields}
        r = self.client.post("/v1/models", json=body, headers=self.admin)
        assert r.status_code == 202, r.text
        return r.json()

    def ready_model(self, **fields: Any) -> dict[str, Any]:
        """A model as the worker leaves it after training: ``ready``, version 0, job done."""
        model = self.model(**fields)
        with session_scope() as s:
            row = s.get(orm.Model, model["id"])
            assert row is not None
            row.status, row.current_version = "ready", 0
            job = s.get(orm.Job, model["train_job_id"])
            assert job is not None
            job.status = "succeeded"
        return model

    def forget(self, model_id: str, sample_ids: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(f"/v1/models/{model_id}/deletion-requests",
                                json={"sample_ids": sample_ids},
                                headers=self.admin if headers is None else headers)

    # --- through the ORM ---------------------------------------------------------------------

    def add_version(self, model_id: str, number: int, data: bytes, *, kind: str = "unlearned",
                    lineage: int = 0, certificate: dict[str, Any] | None = None) -> str:
        sha, size = ArtifactStore(self.settings.artifacts_dir).put(data)
        with session_scope() as s:
            s.add(orm.Version(
                model_id=model_id, number=number, parent_number=number - 1 if number else None,
                lineage=lineage, kind=kind, sha256=sha, size_bytes=size,
                certificate=certificate or {"version": number, "weights_sha256": sha},
                metrics={"test_accuracy": 0.9},
            ))
        return sha

    def add_forgotten(self, model_id: str, indices: list[int], version: int) -> None:
        with session_scope() as s:
            s.add_all(orm.ForgottenSample(model_id=model_id, sample_index=i, version=version)
                      for i in indices)

    def counts(self) -> dict[str, int]:
        with session_scope() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0
                    for t in ALL_TABLES}

    def broker_messages(self) -> list[dict[str, Any]]:
        """Task name and args of every message in the filesystem broker's folder."""
        out = []
        for path in sorted(self.settings.broker_dir.glob("*.msg")):
            msg = json.loads(path.read_text())
            args = json.loads(_body(msg))[0]
            out.append({"task": msg["headers"]["task"], "args": args,
                        "eta": msg["headers"].get("eta")})
        return out


def _body(msg: dict[str, Any]) -> str:
    body = msg["body"]
    if msg.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body).decode()
    return body


@pytest.fixture
def api(client: TestClient, settings: Settings) -> Api:
    return Api(client, settings)

