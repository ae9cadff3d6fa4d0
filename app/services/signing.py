"""Ed25519 signing keys and signed certificates (issue 5 §1).

Signed certificate (the "envelope") — what ``Version.certificate`` stores and every route serves::

    {
      ...the certificate body of METHOD §8...,
      "signature": {
        "alg": "Ed25519",                       # RFC 8032 §5.1 (PureEdDSA over edwards25519)
        "key_id": "<16 hex>",                   # first 16 hex of SHA-256(raw 32-byte public key)
        "canonicalization": "RFC8785",          # JSON Canonicalization Scheme (JCS)
        "value": "<base64url, no padding>"      # signature over rfc8785.dumps(body)
      }
    }

``body`` is the object with its ``"signature"`` member removed. To verify, drop ``"signature"``,
canonicalize the rest with RFC 8785, and check the Ed25519 signature with the public key named by
``key_id`` (``GET /v1/keys``, or offline ``lethe verify --key``).

Before signing, the body is normalized to I-JSON (RFC 7493), which RFC 8785 requires: a
non-finite float becomes the string ``"Infinity"`` / ``"-Infinity"`` / ``"NaN"`` (METHOD's
convention for unbounded figures), and an integer outside ±(2⁵³ − 1) becomes its decimal string
(e.g. a 63-bit ``minibatch_seed``). The stored certificate is that normalized body plus the
signature, so it round-trips through any JSON parser unchanged.

Keys live in the private storage, never behind a route:

- ``<private_dir>/signing/<key_id>.pem``: a generated private key (PKCS#8 PEM, mode 0600).
- ``<private_dir>/signing/keys.json``: the registry of PUBLIC keys ever used to sign, and which
  generated key is active. A rotated-out key stays listed, so old versions stay verifiable.

The active key is, in order: the PEM file named by ``LETHE_SIGNING_KEY_PATH`` (registered on first
use; changing the setting to another file rotates), else the registry's active generated key, else
a key generated on first use. :func:`rotate_signing_key` generates a new active key. Processes
(API and workers) coordinate through an advisory file lock.

This module never imports torch: the API process serves ``GET /v1/keys`` through it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.settings import Settings, get_settings
from app.storage.artifacts import atomic_write

__all__ = [
    "ALG",
    "CANONICALIZATION",
    "SigningKey",
    "active_signing_key",
    "b64url_decode",
    "b64url_encode",
    "canonical_body",
    "key_id_of",
    "normalize",
    "public_keys",
    "rotate_signing_key",
    "sign_certificate",
]

ALG = "Ed25519"
CANONICALIZATION = "RFC8785"
SIGNATURE_FIELD = "signature"
_MAX_SAFE_INT = 2**53 - 1
_REGISTRY = "keys.json"


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode` (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey | bytes) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key (RFC 8032 §5.1.5 encoding).

    >>> key_id_of(bytes(32))
    '66687aadf862bd77'
    """
    raw = public_key if isinstance(public_key, bytes) else _raw_public(public_key)
    return hashlib.sha256(raw).hexdigest()[:16]


def normalize(value: Any) -> Any:
    """The I-JSON (RFC 7493) form of ``value`` that RFC 8785 can canonicalize.

    Non-finite floats become ``"Infinity"``, ``"-Infinity"`` or ``"NaN"``; integers outside
    ±(2⁵³ − 1) become decimal strings; tuples become lists; keys must already be strings.

    >>> normalize({"e": float("inf"), "s": 2**63 - 1, "t": (1, 2.5)})
    {'e': 'Infinity', 's': '9223372036854775807', 't': [1, 2.5]}
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"certificate keys must be strings, got {k!r}")
            out[k] = normalize(v)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    raise TypeError(f"cannot put a {type(value).__name__} into a certificate")


def canonical_body(certificate: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``certificate`` without its ``"signature"`` member."""
    body = {k: v for k, v in certificate.items() if k != SIGNATURE_FIELD}
    return rfc8785.dumps(body)


@dataclass(frozen=True)
class SigningKey:
    """A loaded Ed25519 private key and its id."""

    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return _raw_public(self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (RFC 8032 §5.1.6) of ``message``: 64 bytes."""
        return self.private_key.sign(message)


# --- storage ----------------------------------------------------------------------------------


def _dir(settings: Settings) -> Path:
    return settings.private_dir / "signing"


@contextmanager
def _locked(settings: Settings) -> Iterator[Path]:
    """Exclusive advisory lock over the key folder (API and worker processes share it)."""
    folder = _dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _read_registry(folder: Path) -> dict[str, Any]:
    path = folder / _REGISTRY
    if not path.exists():
        return {"active": None, "keys": []}
    registry: dict[str, Any] = json.loads(path.read_text())
    return registry


def _write_registry(folder: Path, registry: dict[str, Any]) -> None:
    atomic_write(folder / _REGISTRY, json.dumps(registry, indent=2).encode(), 0o644)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _register(registry: dict[str, Any], key: SigningKey, source: str) -> None:
    if not any(entry["key_id"] == key.key_id for entry in registry["keys"]):
        registry["keys"].append({"key_id": key.key_id, "alg": ALG,
                                 "public_key": b64url_encode(key.public_raw),
                                 "created_at": _now(), "source": source})


def _load_pem(path: Path) -> SigningKey:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return SigningKey(key_id_of(private.public_key()), private)


def _generate(folder: Path, registry: dict[str, Any]) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    key = SigningKey(key_id_of(private.public_key()), private)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    atomic_write(folder / f"{key.key_id}.pem", pem, 0o600)
    _register(registry, key, "generated")
    registry["active"] = key.key_id
    return key


def _active(settings: Settings, folder: Path) -> SigningKey:
    """The active key; call under the lock. Generates or registers it on first use."""
    registry = _read_registry(folder)
    if settings.signing_key_path is not None:
        key = _load_pem(Path(settings.signing_key_path))
        before = len(registry["keys"])
        _register(registry, key, "configured")
        if len(registry["keys"]) != before:
            _write_registry(folder, registry)
        return key
    if registry["active"] is not None:
        return _load_pem(folder / f"{registry['active']}.pem")
    key = _generate(folder, registry)
    _write_registry(folder, registry)
    return key


def active_signing_key(settings: Settings | None = None) -> SigningKey:
    """The key that signs new certificates, created on first use (see the module docstring).

    Raises:
        ValueError: ``LETHE_SIGNING_KEY_PATH`` names a file that is not an unencrypted Ed25519
            PEM private key.
    """
    settings = settings or get_settings()
    with _locked(settings) as folder:
        return _active(settings, folder)


def rotate_signing_key(settings: Settings | None = None) -> SigningKey:
    """Generate a new active key; earlier public keys stay listed (old versions stay verifiable).

    Raises:
        ValueError: The key is configured by ``LETHE_SIGNING_KEY_PATH``: rotate by pointing that
            setting at a new key file instead.
    """
    settings = settings or get_settings()
    if settings.signing_key_path is not None:
        raise ValueError("the signing key is configured by LETHE_SIGNING_KEY_PATH; "
                         "rotate by pointing it at a new Ed25519 PEM file")
    with _locked(settings) as folder:
        registry = _read_registry(folder)
        key = _generate(folder, registry)
        _write_registry(folder, registry)
        return key


def public_keys(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every public key that ever signed, oldest first:
    ``{key_id, alg, public_key (base64url raw 32 bytes), created_at, active}``.

    Makes sure the active key exists first (so a fresh service lists the key it will sign with).
    """
    settings = settings or get_settings()
    with _locked(settings) as folder:
        active = _active(settings, folder).key_id
        registry = _read_registry(folder)
    return [{"key_id": e["key_id"], "alg": e["alg"], "public_key": e["public_key"],
             "created_at": e["created_at"], "active": e["key_id"] == active}
            for e in registry["keys"]]


def sign_certificate(body: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """Sign a certificate with the active key: Ed25519 (RFC 8032) over RFC 8785 canonical JSON.

    Args:
        body: The certificate (METHOD §8); a ``"signature"`` member, if any, is replaced.

    Returns:
        The envelope: the I-JSON-normalized body plus ``"signature"`` (module docstring).

    Raises:
        TypeError: A value JSON cannot hold (or a non-string key).
    """
    clean = normalize({k: v for k, v in body.items() if k != SIGNATURE_FIELD})
    key = active_signing_key(settings)
    value = key.sign(rfc8785.dumps(clean))
    return clean | {SIGNATURE_FIELD: {"alg": ALG, "key_id": key.key_id,
                                      "canonicalization": CANONICALIZATION,
                                      "value": b64url_encode(value)}}
