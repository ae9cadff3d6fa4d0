"""End to end over HTTP: upload scikit-learn's digits as an ``.npz`` with its own sample ids and
3 samples per subject, train a logistic regression on it, forget one subject, and check that the
version completes and its certificate forgot exactly that subject's 3 samples."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from app.client import LetheClient
from app.services.merkle import merkle_root
from app.verify import verify

N_TRAIN = 600  # a slice of digits: enough to train on, quick on 2 cores


def _digits_npz() -> tuple[bytes, list[str]]:
    bunch = load_digits()
    x = (bunch.data * 15).astype(np.uint8).reshape(-1, 1, 8, 8)  # grey levels 0..16 → 0..240
    y = bunch.target.astype(np.int64)
    sample_ids = [f"img-{i:04d}" for i in range(N_TRAIN)]
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x[:N_TRAIN], y=y[:N_TRAIN], sample_ids=np.array(sample_ids),
                        subject_ids=np.array([f"person-{i // 3}" for i in range(N_TRAIN)]),
                        x_test=x[N_TRAIN:N_TRAIN + 200], y_test=y[N_TRAIN:N_TRAIN + 200])
    return buf.getvalue(), sample_ids


def test_upload_train_and_forget_a_subject(live_service, tmp_path: Path) -> None:
    service = live_service()
    http = service.http
    body, _ = _digits_npz()
    (tmp_path / "digits.npz").write_bytes(body)
    with LetheClient(f"http://127.0.0.1:{service.port}", service.key) as client:
        dataset = client.upload_dataset("digits-upload", tmp_path / "digits.npz")
    assert dataset["checksum_sha256"] == hashlib.sha256(body).hexdigest()
    assert (dataset["n"], dataset["n_test"], dataset["input_shape"]) == (N_TRAIN, 200, [1, 8, 8])

    model_id = service.create_model({
        "name": "upload-logreg", "dataset_id": dataset["id"], "architecture": "logreg",
        "training": {"epochs": 10, "batch_size": 64, "lr": 3e-3},
        "certification": {"solver": "lissa", "depth": 200, "repeats": 4, "batch_size": 10,
                          "damping": 0.01, "noise_std": 0.01},
        "batching": {"max_samples": 3, "max_wait_seconds": 600},
    })["id"]
    model = service.wait_trained(model_id)
    assert model["status"] == "ready", (model, service.log())
    v0 = http.get(f"/v1/models/{model_id}/versions/0").json()
    assert v0["metrics"]["accuracy"]["test"] is not None  # the uploaded test split is used

    # person-7 owns rows 21, 22, 23 (img-0021..img-0023): one request, the batch is full.
    request = http.post(f"/v1/models/{model_id}/deletion-requests",
                        json={"subject_ids": ["person-7"]})
    assert request.status_code == 202, request.text
    assert (request.json()["sample_count"], request.json()["subject_count"]) == (3, 1)
    final = service.wait_for(request.headers["Location"],
                             lambda r: r["status"] in ("completed", "failed"))
    assert final["status"] == "completed" and final["version"] == 1, (final, service.log())

    cert = http.get(f"/v1/models/{model_id}/versions/1/certificate").json()
    assert cert["forgotten"]["m"] == 3
    assert cert["forgotten"]["retain_size"] == N_TRAIN - 3
    assert cert["forgotten"]["merkle_root"] == merkle_root([21, 22, 23])
    assert cert["dataset"] == {"id": dataset["id"], "source": "upload", "n": N_TRAIN,
                               "checksum_sha256": dataset["checksum_sha256"]}
    blob = http.get(f"/v1/models/{model_id}/versions/1/download").content
    assert hashlib.sha256(blob).hexdigest() == cert["weights_sha256"]

    # The receipt commits to rows and names the uploaded ids and the subject; it verifies offline.
    receipt = http.get(f"/v1/deletion-requests/{request.json()['id']}/receipt").json()
    assert [(s["sample_id"], s["uploaded_id"]) for s in receipt["samples"]] == \
        [(21, "img-0021"), (22, "img-0022"), (23, "img-0023")]
    assert receipt["subject_ids"] == ["person-7"]
    (tmp_path / "weights.safetensors").write_bytes(blob)
    for name, doc in (("cert", cert), ("receipt", receipt),
                      ("keys", http.get("/v1/keys").json())):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    checks = verify(tmp_path / "cert.json", tmp_path / "weights.safetensors",
                    receipt=tmp_path / "receipt.json", key=tmp_path / "keys.json")
    assert [c for c in checks if c.failed] == [] and \
        {c.name for c in checks if c.status == "OK"} >= {"receipt", "weights"}, checks

    # The same subject again completes at once, pointing at version 1; an unknown one is a 422.
    again = http.post(f"/v1/models/{model_id}/deletion-requests",
                      json={"sample_ids": ["img-0022"]})
    assert again.status_code == 202 and again.json()["status"] == "completed"
    assert again.json()["version"] == 1
    unknown = http.post(f"/v1/models/{model_id}/deletion-requests",
                        json={"subject_ids": ["person-7", "nobody"]})
    assert unknown.status_code == 422 and unknown.json()["unknown_subject_ids"] == ["nobody"]
