"""Public keys (no auth) and deletion receipts (requests:read), checked by ``lethe verify``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from app import verify
from app.api import paths
from app.db import models as orm
from app.db.session import session_scope
from app.services import signing
from app.services.merkle import COMMITMENT_SCHEME, merkle_root, verify_proof


def _certificate(api, model_id: str, number: int, ids: list[int], data: bytes) -> dict:
    body = {"schema": "lethe.certificate/v1", "model": {"id": model_id}, "method": "retrain",
            "version": number, "weights_sha256": hashlib.sha256(data).hexdigest(),
            "forgotten": {"m": len(ids), "merkle_root": merkle_root(ids),
                          "commitment": COMMITMENT_SCHEME},
            "guarantee": {"kind": "exact", "epsilon": 0.0, "delta": 0.0}}
    return signing.sign_certificate(body, api.settings)


def test_keys_need_no_auth_and_list_the_active_key(api):
    r = api.client.get(paths.KEYS)
    assert r.status_code == 200, r.text
    keys = r.json()
    assert len(keys) == 1 and keys[0]["active"] and keys[0]["alg"] == "Ed25519"
    raw = signing.b64url_decode(keys[0]["public_key"])
    assert len(raw) == 32 and keys[0]["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
    assert api.client.get(paths.KEYS).json() == keys  # stable: no new key per call
    signing.rotate_signing_key(api.settings)
    rotated = api.client.get(paths.KEYS).json()
    assert [k["active"] for k in rotated] == [False, True] and rotated[0] == keys[0] | {"active": False}


def test_receipt_proves_each_id_against_the_version_that_forgot_it(api, tmp_path: Path):
    model = api.ready_model()
    mid = model["id"]
    data1, data2 = b"v1" * 40, b"v2" * 40
    api.add_version(mid, 0, b"v0" * 40, kind="trained")
    api.add_version(mid, 1, data1, certificate=_certificate(api, mid, 1, [3, 4, 5], data1))
    api.add_version(mid, 2, data2, kind="retrained", lineage=1,
                    certificate=_certificate(api, mid, 2, [9, 10], data2))
    api.add_forgotten(mid, [3, 4, 5], version=1)
    api.add_forgotten(mid, [9, 10], version=2)
    submitted = api.forget(mid, ["9", "3"])
    assert submitted.json()["status"] == "completed" and submitted.json()["version"] == 2

    r = api.client.get(paths.url(paths.DELETION_REQUEST_RECEIPT, request_id=submitted.json()["id"]),
                       headers=api.admin)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert (receipt["schema"], receipt["model_id"], receipt["version"]) == ("lethe.receipt/v1", mid, 2)
    assert [(s["sample_id"], s["version"]) for s in receipt["samples"]] == [(3, 1), (9, 2)]
    assert [c["version"] for c in receipt["certificates"]] == [1, 2]
    for sample in receipt["samples"]:
        cert = receipt["certificates"][sample["version"] - 1]
        assert verify_proof(cert["forgotten"]["merkle_root"], sample["sample_id"], sample["proof"])

    # Offline, as an auditor: the version-2 certificate, its weights, the receipt and the keys.
    files = {"cert": tmp_path / "cert.json", "weights": tmp_path / "w.safetensors",
             "receipt": tmp_path / "r.json", "keys": tmp_path / "keys.json"}
    files["cert"].write_text(api.client.get(f"/v1/models/{mid}/versions/2/certificate",
                                            headers=api.admin).text)
    files["weights"].write_bytes(api.client.get(f"/v1/models/{mid}/versions/2/download",
                                                headers=api.admin).content)
    files["receipt"].write_text(r.text)
    files["keys"].write_text(api.client.get(paths.KEYS).text)
    checks = verify.verify(files["cert"], files["weights"], receipt=files["receipt"],
                           key=files["keys"])
    assert [c.name for c in checks if c.failed] == [], checks
    assert {c.name: c.status for c in checks}["receipt"] == "OK"

    receipt["samples"][0]["proof"][0]["hash"] = "00" * 32
    files["receipt"].write_text(json.dumps(receipt))
    assert [c.name for c in verify.verify(files["cert"], receipt=files["receipt"],
                                          key=files["keys"]) if c.failed] == ["receipt"]


def test_receipt_of_an_unfinished_request_is_409(api):
    model = api.ready_model(batching={"max_samples": 100, "max_wait_seconds": 30})
    pending = api.forget(model["id"], ["1", "2"])
    assert pending.json()["status"] == "pending"
    r = api.client.get(paths.url(paths.DELETION_REQUEST_RECEIPT, request_id=pending.json()["id"]),
                       headers=api.admin)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["request_status"] == "pending"


def test_receipt_needs_a_key_and_a_known_request(api):
    url = paths.url(paths.DELETION_REQUEST_RECEIPT, request_id="nope")
    assert api.client.get(url).status_code == 401
    missing = api.client.get(url, headers=api.admin)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_published_certificates_are_signed_envelopes(api):
    """What the worker stores verifies from the certificate route's bytes."""
    model = api.ready_model()
    data = b"w" * 64
    api.add_version(model["id"], 0, data, kind="trained",
                    certificate=_certificate(api, model["id"], 0, [], data))
    served = api.client.get(f"/v1/models/{model['id']}/versions/0/certificate", headers=api.admin)
    keys = {k["key_id"]: k for k in api.client.get(paths.KEYS).json()}
    cert = served.json()
    assert cert["signature"]["key_id"] in keys
    with session_scope() as s:
        row = s.query(orm.Version).filter_by(model_id=model["id"], number=0).one()
        assert row.certificate == cert


def test_openapi_lists_the_new_routes(client):
    spec = client.get("/openapi.json").json()["paths"]
    assert paths.KEYS in spec and paths.DELETION_REQUEST_RECEIPT in spec
    assert "security" not in spec[paths.KEYS]["get"]
