"""The remote ``lethe`` commands (forget, status, download, budget) under typer's CliRunner, with
the client's transport replaced by ``httpx.MockTransport``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import app.cli as cli_module
from app.client import LetheClient, RetryPolicy

BLOB = b"\x01\x02weights" * 5000
SHA = hashlib.sha256(BLOB).hexdigest()
BUDGET = {
    "model_id": "m1", "lineage": 0, "releases_in_lineage": 1, "cumulative_epsilon": 12.5,
    "cumulative_delta": 2e-5, "accountant": "rdp",
    "caps": {"max_epsilon": 100.0, "max_delta": 1e-3, "max_releases": 10,
             "max_forgotten_fraction": 0.1},
    "consumed": {"epsilon": 12.5, "delta": 2e-5, "releases": 1, "forgotten_fraction": 0.02},
    "remaining": {"epsilon": 87.5, "delta": 9.8e-4, "releases": 9, "forgotten_fraction": 0.08},
    "projection": {"release_size": 30, "releases_that_fit": 4},
    "rows": [{"version": 1, "lineage": 0, "kind": "unlearned", "m": 30, "retain_size": 1407,
              "sensitivity": 0.5, "noise_std": 0.1, "epsilon": 12.5, "delta": 1e-5,
              "cumulative_epsilon": 12.5, "cumulative_delta": 2e-5, "accountant": "rdp",
              "created_at": "2026-01-01T00:00:00Z"}],
}


class Server:
    def __init__(self) -> None:
        self.polls = 0
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if path == "/v1/models/m1/deletion-requests":
            body = json.loads(request.content)
            if "subject_ids" in body:  # each subject of the fake dataset has 3 samples
                return httpx.Response(202, json={
                    "id": "r1", "status": "pending", "sample_count": 3 * len(body["subject_ids"]),
                    "subject_count": len(body["subject_ids"])})
            return httpx.Response(202, json={"id": "r1", "status": "pending",
                                             "sample_count": len(body["sample_ids"])})
        if path == "/v1/deletion-requests/r1":
            self.polls += 1
            done = self.polls >= 2
            return httpx.Response(200, json={"id": "r1", "model_id": "m1", "sample_count": 3,
                                             "status": "completed" if done else "applying",
                                             "version": 1 if done else None, "error": None})
        if path == "/v1/deletion-requests/r1/cancel" and request.method == "POST":
            return httpx.Response(200, json={"id": "r1", "status": "canceled"})
        if path == "/v1/deletion-requests/r2/cancel":
            return httpx.Response(409, json={"title": "Conflict", "status": 409,
                                             "detail": "deletion request 'r2' is batched"})
        if path == "/v1/models/m1/versions/1/certificate":
            return httpx.Response(200, json={"weights_sha256": SHA})
        if path == "/v1/models/m1/versions/1/download":
            return httpx.Response(200, content=BLOB)
        if path == "/v1/models/m1/budget":
            return httpx.Response(200, json=BUDGET)
        return httpx.Response(404, json={"title": "Not found", "status": 404,
                                         "detail": f"unknown {path}"})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    server = Server()

    def make(url: str, key: str | None) -> LetheClient:
        assert url == "http://lethe.test" and key == "k"
        return LetheClient(url, key, transport=httpx.MockTransport(server),
                           retry=RetryPolicy(attempts=2, backoff_s=0.0))

    monkeypatch.setattr(cli_module, "make_client", make)
    monkeypatch.setenv("LETHE_URL", "http://lethe.test")
    monkeypatch.setenv("LETHE_API_KEY", "k")
    return server


def run(*args: str) -> Any:
    return CliRunner().invoke(cli_module.cli, list(args))


def test_forget_reads_ids_and_waits(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.client.time.sleep", lambda s: None)
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2, 3\n")
    result = run("forget", "--model", "m1", "--samples", str(ids), "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
    assert json.loads(server.seen[0].content) == {"sample_ids": ["1", "2", "3"]}
    assert "Idempotency-Key" in server.seen[0].headers
    plain = run("forget", "--model", "m1", "--samples", str(ids))
    assert plain.exit_code == 0 and "request r1: pending (3 samples)" in plain.stdout


def test_forget_subjects(server: Server) -> None:
    result = run("forget", "--model", "m1", "--subject", "alice", "--subject", "bob, jr.")
    assert result.exit_code == 0, result.output
    assert json.loads(server.seen[0].content) == {"subject_ids": ["alice", "bob, jr."]}
    assert "request r1: pending (6 samples of 2 subjects)" in result.stdout


def test_forget_needs_exactly_one_of_samples_and_subjects(server: Server, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n")
    for args in ((), ("--samples", str(ids), "--subject", "alice")):
        result = run("forget", "--model", "m1", *args)
        assert result.exit_code == 2 and "exactly one of --samples or --subject" in result.output
    assert server.seen == []


def test_status(server: Server) -> None:
    result = run("status", "r1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "applying"
    text = run("status", "r1")
    assert "completed" in text.stdout and "version       1" in text.stdout


def test_download_checks_the_certificate(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    result = run("download", "--model", "m1", "--version", "1", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["sha256"] == SHA and body["sha256_ok"] and out.read_bytes() == BLOB
    out.unlink()
    text = run("download", "--model", "m1", "--version", "1", "-o", str(out))
    assert text.exit_code == 0 and "matches the certificate" in text.stdout


def test_budget(server: Server) -> None:
    result = run("budget", "--model", "m1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == BUDGET
    table = run("budget", "--model", "m1")
    assert table.exit_code == 0 and "87.5" in table.stdout and "4 more release(s)" in table.stdout


def test_errors_exit_2_with_the_problem(server: Server) -> None:
    result = run("budget", "--model", "nope", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["detail"] == "unknown /v1/models/nope/budget"
    text = run("status", "zzz")
    assert text.exit_code == 2 and "404 Not found" in text.stderr


def test_cancel(server: Server) -> None:
    result = run("cancel", "r1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "canceled"
    assert run("cancel", "r1").stdout.strip() == "request r1: canceled"
    refused = run("cancel", "r2")
    assert refused.exit_code == 2 and "batched" in refused.stderr
