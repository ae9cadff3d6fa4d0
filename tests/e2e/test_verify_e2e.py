"""End to end: a real service's version-1 certificate, weights and receipt verify offline with
``lethe verify`` (exit 0), and fail after one byte of the weights is flipped (exit 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from service_harness import ROOT, digits_flow


def _verify(*args: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "verify", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_downloaded_certificate_weights_and_receipt_verify(live_service, tmp_path: Path) -> None:
    service = live_service()
    flow = digits_flow(service)
    model_id = flow["model_id"]
    http = service.http

    # Samples that version 1 forgot: the request completes at once, pointing at version 1.
    request = http.post(f"/v1/models/{model_id}/deletion-requests",
                        json={"sample_ids": ["100", "117", "129"]})
    assert request.status_code == 202 and request.json()["status"] == "completed", request.text
    receipt = http.get(f"/v1/deletion-requests/{request.json()['id']}/receipt")
    assert receipt.status_code == 200, receipt.text
    assert {s["version"] for s in receipt.json()["samples"]} == {1}

    keys = httpx.get(f"http://127.0.0.1:{service.port}/v1/keys", timeout=30)  # no key needed
    assert keys.status_code == 200 and any(k["active"] for k in keys.json())
    cert = http.get(f"/v1/models/{model_id}/versions/1/certificate")
    assert cert.json()["signature"]["key_id"] in {k["key_id"] for k in keys.json()}
    weights = http.get(f"/v1/models/{model_id}/versions/1/download").content

    paths = {"cert": tmp_path / "cert-v1.json", "weights": tmp_path / "v1.safetensors",
             "receipt": tmp_path / "receipt.json", "keys": tmp_path / "keys.json"}
    paths["cert"].write_text(cert.text)
    paths["weights"].write_bytes(weights)
    paths["receipt"].write_text(receipt.text)
    paths["keys"].write_text(keys.text)

    ok = _verify(paths["cert"], paths["weights"], "--receipt", paths["receipt"],
                 "--key", paths["keys"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for name in ("signature", "weights", "receipt", "calibration ε", "calibration σ"):
        assert any(line.startswith("OK") and name in line for line in ok.stdout.splitlines()), ok.stdout

    flipped = bytearray(weights)
    flipped[len(flipped) // 2] ^= 0x01
    paths["weights"].write_bytes(bytes(flipped))
    bad = _verify(paths["cert"], paths["weights"], "--receipt", paths["receipt"],
                  "--key", paths["keys"])
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL  weights" in bad.stdout

    # Without the auditor's key the signature cannot be checked: that is a failure, not a pass.
    keyless = _verify(paths["cert"])
    assert keyless.returncode == 1 and "--key" in keyless.stdout
