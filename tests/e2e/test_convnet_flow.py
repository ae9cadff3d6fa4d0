"""End to end with a convolutional model: over HTTP, a tiny AllCNN (BatchNorm in eval mode) on
the digits images is trained, forgets 20 samples, and publishes version 1, whose certificate and
weights verify offline; an owner-registered architecture that fails a guard fails its training
job with the guard's name, and an unregistered name is answered 422 with the choices."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from safetensors.numpy import load_file

from app.verify import public_keys_from_json, verify_documents


def test_allcnn_on_digits_to_a_verified_certificate(live_service, tmp_path: Path) -> None:
    service = live_service(LETHE_ARCHITECTURES=json.dumps(
        {"owner-dropout": "tests.owner_architectures:with_dropout"}))
    http = service.http
    dataset = http.post("/v1/datasets", json={"name": "digits", "source": "digits"}).json()

    unknown = http.post("/v1/models", json={"name": "m", "dataset_id": dataset["id"],
                                             "architecture": "vgg16"})
    assert unknown.status_code == 422, unknown.text
    assert "allcnn, resnet18, owner-dropout" in unknown.json()["detail"]

    refused = http.post("/v1/models", json={"name": "dropout", "dataset_id": dataset["id"],
                                             "architecture": "owner-dropout"})
    assert refused.status_code == 202, refused.text
    created = service.create_model({
        "name": "digits-allcnn", "dataset_id": dataset["id"], "architecture": "allcnn",
        "training": {"epochs": 4, "batch_size": 64, "lr": 3e-3, "width": 4},
        "certification": {"solver": "lissa", "depth": 100, "repeats": 2, "batch_size": 10,
                          "damping": 0.01, "auto_damping": True, "noise_std": 0.01},
        "batching": {"max_samples": 20, "max_wait_seconds": 600},
    })
    assert created["training"]["width"] == 4
    model_id = created["id"]

    failed = service.wait_trained(refused.json()["id"])
    assert failed["status"] == "failed"
    assert "refused by the supported layers guard" in failed["error"] and "Dropout" in failed["error"]

    model = service.wait_trained(model_id)
    assert model["status"] == "ready", (model, service.log())
    ids = [str(i) for i in range(200, 220)]
    answer = http.post(f"/v1/models/{model_id}/deletion-requests", json={"sample_ids": ids})
    assert answer.status_code == 202, answer.text
    final = service.wait_for(answer.headers["Location"],
                             lambda r: r["status"] in ("completed", "failed"))
    assert final["status"] == "completed" and final["version"] == 1, (final, service.log())

    cert = http.get(f"/v1/models/{model_id}/versions/1/certificate").json()
    assert cert["method"] == "newton-lissa" and cert["forgotten"]["m"] == 20
    assert cert["model"]["architecture"] == "allcnn" and cert["training"]["width"] == 4
    assert "BatchNorm" in cert["model"]["weights_file"]  # the buffers' terms, signed with the rest
    weights = tmp_path / "v1.safetensors"
    weights.write_bytes(http.get(f"/v1/models/{model_id}/versions/1/download").content)
    keys = public_keys_from_json(httpx.get(f"http://127.0.0.1:{service.port}/v1/keys").json())
    checks = verify_documents(cert, weights, keys=keys, skip_receipt=True)
    assert not [c for c in checks if c.failed], checks
    assert {c.name for c in checks if c.status == "OK"} >= {"signature", "weights"}

    # The released file is a complete state dict: BatchNorm statistics as initialised.
    tensors = load_file(weights)
    assert "1.weight" in tensors and "2.running_var" in tensors
    assert (tensors["2.running_var"] == 1).all() and (tensors["2.running_mean"] == 0).all()
