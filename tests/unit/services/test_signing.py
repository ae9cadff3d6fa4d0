"""Signing keys and signed certificates: Ed25519 (RFC 8032) over RFC 8785 canonical JSON."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.services import signing
from app.settings import Settings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _verify(envelope: dict, keys: list[dict]) -> None:
    """Verify as an auditor would, from the JSON text and the public key list only."""
    parsed = json.loads(json.dumps(envelope))
    sig = parsed.pop("signature")
    entry = next(k for k in keys if k["key_id"] == sig["key_id"])
    public = Ed25519PublicKey.from_public_bytes(signing.b64url_decode(entry["public_key"]))
    public.verify(signing.b64url_decode(sig["value"]), rfc8785.dumps(parsed))


def test_key_is_generated_once_with_private_mode_and_its_id(settings: Settings) -> None:
    key = signing.active_signing_key(settings)
    pem = settings.private_dir / "signing" / f"{key.key_id}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert key.key_id == hashlib.sha256(key.public_raw).hexdigest()[:16]
    assert signing.active_signing_key(settings).key_id == key.key_id  # loaded, not regenerated
    assert [(k["key_id"], k["alg"], k["active"]) for k in signing.public_keys(settings)] == [
        (key.key_id, "Ed25519", True)]
    assert signing.b64url_decode(signing.public_keys(settings)[0]["public_key"]) == key.public_raw


def test_envelope_signs_the_canonical_body(settings: Settings) -> None:
    body = {"schema": "lethe.certificate/v1", "b": [1, 2.5, None], "a": {"z": 1e-5, "y": "é"},
            "guarantee": {"epsilon": float("inf")}, "solver": {"minibatch_seed": 2**62 + 1}}
    env = signing.sign_certificate(body, settings)
    assert env["signature"]["alg"] == "Ed25519" and env["signature"]["canonicalization"] == "RFC8785"
    assert env["guarantee"]["epsilon"] == "Infinity"  # I-JSON: no float infinity
    assert env["solver"]["minibatch_seed"] == str(2**62 + 1)  # beyond 2^53: a decimal string
    assert {k: v for k, v in env.items() if k != "signature"} == signing.normalize(body)
    _verify(env, signing.public_keys(settings))
    again = signing.sign_certificate(env, settings)  # re-signing replaces, never nests
    assert again == env  # Ed25519 is deterministic (RFC 8032 §5.1.6)
    tampered = env | {"b": [1, 2.5, 0]}
    with pytest.raises(InvalidSignature):
        _verify(tampered, signing.public_keys(settings))


def test_rotation_keeps_old_certificates_verifiable(settings: Settings) -> None:
    old = signing.sign_certificate({"version": 1}, settings)
    first = signing.active_signing_key(settings)
    second = signing.rotate_signing_key(settings)
    assert second.key_id != first.key_id
    assert signing.active_signing_key(settings).key_id == second.key_id
    new = signing.sign_certificate({"version": 2}, settings)
    keys = signing.public_keys(settings)
    assert [(k["key_id"], k["active"]) for k in keys] == [(first.key_id, False),
                                                          (second.key_id, True)]
    assert old["signature"]["key_id"] == first.key_id and new["signature"]["key_id"] == second.key_id
    _verify(old, keys)
    _verify(new, keys)


def test_configured_key_path_is_used_and_listed(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "signer.pem"
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    settings = Settings(home=tmp_path / "home", signing_key_path=path)
    env = signing.sign_certificate({"version": 3}, settings)
    assert env["signature"]["key_id"] == signing.key_id_of(private.public_key())
    assert [k["active"] for k in signing.public_keys(settings)] == [True]
    _verify(env, signing.public_keys(settings))
    with pytest.raises(ValueError, match="LETHE_SIGNING_KEY_PATH"):
        signing.rotate_signing_key(settings)
    assert not list((settings.private_dir / "signing").glob("*.pem"))  # nothing generated


def test_a_configured_file_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ValueError):
        signing.active_signing_key(Settings(home=tmp_path / "home", signing_key_path=bad))


def test_values_json_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError):
        signing.normalize({"x": object()})
    with pytest.raises(TypeError):
        signing.normalize({1: "non-string key"})


def test_signing_and_verify_never_import_torch(tmp_path: Path) -> None:
    code = ("import sys, app.services.signing, app.verify, app.services.receipts; "
            "sys.exit(1 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)")
    env = {**os.environ, "LETHE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_rotates_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from app.cli import cli
    from app.settings import get_settings

    monkeypatch.setenv("LETHE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LETHE_SIGNING_KEY_PATH", raising=False)
    get_settings.cache_clear()
    try:
        first = signing.active_signing_key().key_id
        result = CliRunner().invoke(cli, ["rotate-signing-key"])
        assert result.exit_code == 0, result.output
        second = signing.active_signing_key().key_id
        assert second != first and second in result.output
        assert [k["key_id"] for k in signing.public_keys()] == [first, second]
    finally:
        get_settings.cache_clear()
