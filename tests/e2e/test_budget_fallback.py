"""Sequential deletions over HTTP until the budget caps force an exact retrain (METHOD §7),
exactly when the budget's projection says so; the retrain starts a new lineage. Every
certificate, weights file and receipt verifies offline with ``lethe verify``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service_harness import ROOT, LiveService


def _forget(service: LiveService, model_id: str, ids: range) -> dict:
    answer = service.http.post(f"/v1/models/{model_id}/deletion-requests",
                               json={"sample_ids": [str(i) for i in ids]})
    assert answer.status_code == 202, answer.text
    done = service.wait_for(answer.headers["Location"], lambda r: r["status"] in ("completed", "failed"))
    assert done["status"] == "completed", (done, service.log())
    return done


def _verify(service: LiveService, model_id: str, request: dict, folder: Path) -> str:
    """Download the version's certificate, weights and the request's receipt; run lethe verify."""
    version = request["version"]
    files = {"cert": folder / f"cert-v{version}.json", "weights": folder / f"v{version}.safetensors",
             "receipt": folder / f"receipt-{request['id']}.json", "keys": folder / "keys.json"}
    files["cert"].write_text(json.dumps(
        service.http.get(f"/v1/models/{model_id}/versions/{version}/certificate").json()))
    files["weights"].write_bytes(service.http.get(f"/v1/models/{model_id}/versions/{version}/download").content)
    files["receipt"].write_text(json.dumps(service.http.get(f"/v1/deletion-requests/{request['id']}/receipt").json()))
    files["keys"].write_text(json.dumps(service.http.get("/v1/keys").json()))
    run = subprocess.run([sys.executable, "-m", "app.cli", "verify", str(files["cert"]), str(files["weights"]),
                          "--receipt", str(files["receipt"]), "--key", str(files["keys"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_caps_force_a_retrain_as_projected(live_service, tmp_path: Path) -> None:
    service = live_service()
    http = service.http
    dataset = http.post("/v1/datasets", json={"name": "digits", "source": "digits"}).json()
    model_id = http.post("/v1/models", json={
        "name": "digits-logreg", "dataset_id": dataset["id"], "architecture": "logreg",
        "training": {"epochs": 10, "batch_size": 64, "lr": 1e-2},
        "certification": {"solver": "cg", "damping": 0.01, "noise_std": 0.5},
        "batching": {"max_samples": 10, "max_wait_seconds": 600},
        "budget": {"max_releases": 2, "max_epsilon": 1e9},
    }).json()["id"]
    service.wait_for(f"/v1/models/{model_id}", lambda m: m["status"] == "ready")

    kinds = []
    for batch in range(3):
        budget = http.get(f"/v1/models/{model_id}/budget").json()
        request = _forget(service, model_id, range(10 * batch, 10 * batch + 10))
        version = request["version"]
        verified = _verify(service, model_id, request, tmp_path)
        assert "OK    receipt" in verified and "OK    signature" in verified
        cert = http.get(f"/v1/models/{model_id}/versions/{version}/certificate").json()
        kinds.append(cert["method"])
        if batch == 2:
            # The ledger predicted it: after two releases no further release fits.
            assert budget["projection"] == {"release_size": 10, "releases_that_fit": 0}
            assert budget["remaining"]["releases"] == 0
            assert cert["guarantee"]["kind"] == "exact"
            assert "max_releases" in cert["reason"]
            assert cert["forgotten"]["lineage_total"] == 30
        else:
            assert cert["budget"]["releases_in_lineage"] == batch + 1
    assert kinds == ["newton-cg", "newton-cg", "retrain"]

    after = http.get(f"/v1/models/{model_id}/budget").json()
    assert (after["lineage"], after["releases_in_lineage"], after["cumulative_epsilon"]) == (1, 0, 0.0)
    assert [r["kind"] for r in after["rows"]] == ["trained", "unlearned", "unlearned", "retrained"]
    # The new lineage unlearns again from the retrained model.
    request = _forget(service, model_id, range(30, 40))
    _verify(service, model_id, request, tmp_path)
    version = request["version"]
    cert = http.get(f"/v1/models/{model_id}/versions/{version}/certificate").json()
    assert cert["method"] == "newton-cg" and cert["lineage"] == 1 and cert["parent_version"] == 3
