"""The Python client and the remote CLI against a real ``lethe serve`` (uvicorn + Celery worker):
create, train, forget, wait, download with resume and SHA-256 check, verify certificate and receipt,
budget; then ``lethe status``/``download``/``budget`` against the same service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.client import LetheClient, LetheClientError

pytestmark = pytest.mark.e2e


def test_client_and_cli_against_a_live_service(live_service, tmp_path: Path) -> None:
    service = live_service()
    base = f"http://127.0.0.1:{service.port}"
    with LetheClient(base, service.key) as client:
        dataset = client.create_dataset("digits", "digits")
        model = client.create_model(
            "digits-logreg", dataset["id"], "logreg",
            training={"epochs": 5, "batch_size": 64, "lr": 3e-3},
            certification={"solver": "cg", "noise_std": 0.01},
            batching={"max_samples": 5, "max_wait_seconds": 600})
        ready = client.wait_model(model["id"], timeout_s=240, poll_s=0.3)
        assert ready["status"] == "ready", service.log()
        assert [m["id"] for m in client.list_models()] == [model["id"]]

        with pytest.raises(LetheClientError) as err:
            client.forget(model["id"], ["999999"])
        assert err.value.status == 422 and err.value.title

        request = client.forget(model["id"], [10, 11, 12, 13, 14])
        final = client.wait_request(request["id"], timeout_s=240, poll_s=0.3)
        assert final["status"] == "completed" and final["version"] == 1, service.log()
        assert [v["number"] for v in client.list_versions(model["id"])] == [0, 1]

        cert = client.certificate(model["id"], 1)
        target = tmp_path / "v1.safetensors"
        full = service.http.get(f"/v1/models/{model['id']}/versions/1/download").content
        (tmp_path / "v1.safetensors.part").write_bytes(full[: len(full) // 2])
        result = client.download(model["id"], 1, target)
        assert result.resumed_from == len(full) // 2 and result.sha256 == cert["weights_sha256"]
        assert target.read_bytes() == full

        checks = client.verify_version(model["id"], 1, target, request_id=request["id"])
        assert not [c for c in checks if c.failed], checks
        assert {c.name for c in checks if c.status == "OK"} >= {"signature", "weights"}

        budget = client.budget(model["id"])
        assert budget["consumed"]["releases"] == 1 and budget["rows"][-1]["version"] == 1

    env = {"LETHE_URL": base, "LETHE_API_KEY": service.key}
    runner = CliRunner()
    status = runner.invoke(cli, ["status", request["id"], "--json"], env=env)
    assert status.exit_code == 0 and json.loads(status.stdout)["version"] == 1
    out = tmp_path / "cli.safetensors"
    got = runner.invoke(cli, ["download", "--model", model["id"], "--version", "1", "-o", str(out),
                              "--json"], env=env)
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["sha256"] == cert["weights_sha256"]
    table = runner.invoke(cli, ["budget", "--model", model["id"]], env=env)
    assert table.exit_code == 0 and "ledger" in table.stdout
    ids = tmp_path / "ids.txt"
    ids.write_text("20\n21\n22\n23\n24\n")
    forgot = runner.invoke(cli, ["forget", "--model", model["id"], "--samples", str(ids), "--wait",
                                 "--timeout", "240", "--json"], env=env)
    assert forgot.exit_code == 0, forgot.output
    assert json.loads(forgot.stdout)["version"] == 2
