"""``lethe verify``: check a signed certificate offline (issue 5 §1).

No network, no database, no torch: an auditor needs only the certificate, the public key
(``GET /v1/keys`` saved as JSON, or a PEM file), and optionally the weights file and a deletion
receipt. Each check prints one line, ``OK``, ``FAIL`` or ``SKIP`` (with the reason); the exit code
is 1 if any check failed, else 0.

Checks:

1. ``signature``: Ed25519 (RFC 8032 §5.1.7) over the RFC 8785 canonical JSON of the certificate
   without its ``"signature"`` member, with the key named by ``signature.key_id``
   (key id = first 16 hex of SHA-256 of the raw public key). Without a key this check FAILS: the
   auditor must bring the key.
2. ``weights``: the file's SHA-256 equals ``weights_sha256``.
3. ``receipt``: every inclusion proof of the receipt against ``forgotten.merkle_root`` of the
   version that forgot the sample (this certificate, or a certificate carried by the receipt
   whose signature is checked the same way). Tree: :mod:`app.services.merkle` (RFC 6962-style
   leaf/node domain separation).
4. ``consistency``: ``certified_delta = delta + rho``, the guarantee's Δ and σ equal the
   ``sensitivity.total`` and ``noise.noise_std`` sections, and Δ ≤ 2C.
5. ``calibration``: recomputes, with an implementation independent of Lethe's
   (:mod:`mpmath` at 60 significant digits, bisection), the smallest ε that σ certifies and the
   smallest σ that certifies ε, for the analytic Gaussian mechanism of Balle & Wang (ICML 2018,
   arXiv 1805.06530, Thm 8):

       δ(ε, σ) = Φ(Δ/(2σ) − εσ/Δ) − e^ε·Φ(−Δ/(2σ) − εσ/Δ) ≤ δ.

   The certified ε must not be below the recomputed one (never overstated) and both must agree
   within a relative tolerance. Skipped, with the reason, for exact (retrain) and training
   certificates.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mpmath
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.services.merkle import verify_proof
from app.storage.artifacts import sha256_file

__all__ = [
    "Check",
    "analytic_delta_mp",
    "epsilon_for_sigma",
    "load_public_keys",
    "main",
    "sigma_for_epsilon",
    "verify",
]

RTOL = 1e-6
"""Relative tolerance of the calibration comparison (Lethe rounds up by ≤ 1e-9 relative)."""
_SAFETY_RTOL = 1e-12
"""Slack for the 'never overstated' side: far below any rounding Lethe may do upwards."""
_DPS = 60
_BISECT_STEPS = 200


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # "OK" | "FAIL" | "SKIP"
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


# --- keys and signatures ----------------------------------------------------------------------


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _key_from_text(text: str) -> Ed25519PublicKey:
    if text.lstrip().startswith("-----BEGIN"):
        data = text.encode()
        if "PRIVATE KEY" in text:
            private = serialization.load_pem_private_key(data, password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return private.public_key()
        public = serialization.load_pem_public_key(data)
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return public
    return Ed25519PublicKey.from_public_bytes(_b64url_decode(text))


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id from a PEM file or the JSON of ``GET /v1/keys``.

    Raises:
        ValueError: The file holds no usable Ed25519 public key.
    """
    text = path.read_text()
    if text.lstrip().startswith("-----BEGIN"):
        key = _key_from_text(text)
        return {_key_id(key): key}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is neither PEM nor JSON: {exc}") from exc
    return public_keys_from_json(data, str(path))


def public_keys_from_json(data: Any, source: str = "keys") -> dict[str, Ed25519PublicKey]:
    """Public keys by key id from the parsed JSON of ``GET /v1/keys``: the list that route
    returns, ``{"keys": [...]}``, or one key object. A key whose stated ``key_id`` is not the id
    of its bytes is refused.

    Raises:
        ValueError: No usable Ed25519 public key, or a mismatched ``key_id``.
    """
    entries = data.get("keys", [data]) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected a list of keys")
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("alg", "Ed25519") != "Ed25519":
            continue
        key = _key_from_text(str(entry["public_key"]))
        if entry.get("key_id", _key_id(key)) != _key_id(key):
            raise ValueError(f"{source}: key_id {entry.get('key_id')!r} does not match its key "
                             f"(computed {_key_id(key)})")
        keys[_key_id(key)] = key
    if not keys:
        raise ValueError(f"{source} holds no Ed25519 public key")
    return keys


def check_signature(cert: dict[str, Any], keys: dict[str, Ed25519PublicKey] | None,
                     label: str = "signature") -> Check:
    sig = cert.get("signature")
    if not isinstance(sig, dict):
        return Check(label, "FAIL", "the certificate carries no signature")
    if sig.get("alg") != "Ed25519" or sig.get("canonicalization", "RFC8785") != "RFC8785":
        return Check(label, "FAIL", f"unsupported signature scheme {sig.get('alg')!r} / "
                                    f"{sig.get('canonicalization')!r}")
    if keys is None:
        return Check(label, "FAIL", f"no public key given: pass --key (a PEM file or the JSON of "
                                    f"GET /v1/keys) for key_id {sig.get('key_id')}")
    key = keys.get(str(sig.get("key_id")))
    if key is None:
        return Check(label, "FAIL", f"key_id {sig.get('key_id')!r} is not among the given keys "
                                    f"({', '.join(sorted(keys))})")
    try:
        body = rfc8785.dumps({k: v for k, v in cert.items() if k != "signature"})
        key.verify(_b64url_decode(str(sig.get("value", ""))), body)
    except InvalidSignature:
        return Check(label, "FAIL", f"Ed25519 signature does not match the certificate "
                                    f"(key {sig['key_id']})")
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        return Check(label, "FAIL", f"cannot check the signature: {exc}")
    return Check(label, "OK", f"Ed25519 by key {sig['key_id']} over RFC 8785 canonical JSON")


# --- weights and receipt ----------------------------------------------------------------------


def _check_weights(cert: dict[str, Any], weights: Path | None) -> Check:
    if weights is None:
        return Check("weights", "SKIP", "no weights file given")
    try:
        actual = sha256_file(weights)
    except OSError as exc:
        return Check("weights", "FAIL", f"cannot read {weights}: {exc}")
    if actual != cert.get("weights_sha256"):
        return Check("weights", "FAIL", f"SHA-256 of {weights.name} is {actual}, the certificate "
                                        f"says {cert.get('weights_sha256')}")
    return Check("weights", "OK", f"SHA-256 {actual} = weights_sha256")


def _check_receipt(cert: dict[str, Any], receipt: dict[str, Any] | None,
                   keys: dict[str, Ed25519PublicKey] | None) -> list[Check]:
    if receipt is None:
        return [Check("receipt", "SKIP", "no receipt given")]
    checks: list[Check] = []
    model_id = (cert.get("model") or {}).get("id")
    if receipt.get("model_id") != model_id:
        return [Check("receipt", "FAIL", f"receipt is for model {receipt.get('model_id')!r}, the "
                                         f"certificate for {model_id!r}")]
    by_version = {cert.get("version"): cert}
    for other in receipt.get("certificates") or []:
        number = other.get("version") if isinstance(other, dict) else None
        if number == cert.get("version"):
            if other.get("signature") != cert.get("signature"):
                checks.append(Check("receipt", "FAIL", f"the receipt's certificate of version "
                                                       f"{number} is not this certificate"))
            continue
        if (other.get("model") or {}).get("id") != model_id:
            checks.append(Check("receipt", "FAIL", f"receipt certificate of version {number} is "
                                                   "for another model"))
            continue
        signed = check_signature(other, keys, label=f"receipt v{number} signature")
        checks.append(signed)
        if not signed.failed:
            by_version[number] = other
    samples = receipt.get("samples")
    if not isinstance(samples, list) or not samples:
        return [*checks, Check("receipt", "FAIL", "the receipt lists no samples")]
    bad: list[str] = []
    versions: set[int] = set()
    for sample in samples:
        sid, number = sample.get("sample_id"), sample.get("version")
        source = by_version.get(number)
        if source is None:
            bad.append(f"{sid} (no verified certificate of version {number})")
            continue
        root = (source.get("forgotten") or {}).get("merkle_root")
        if not verify_proof(root, sid, sample.get("proof")):
            bad.append(f"{sid} (proof does not reach forgotten.merkle_root of version {number})")
            continue
        versions.add(number)
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        checks.append(Check("receipt", "FAIL", f"{len(bad)} of {len(samples)} proof(s) fail: "
                                               f"{shown}"))
    else:
        checks.append(Check("receipt", "OK", f"{len(samples)} inclusion proof(s) verify against "
                                             f"forgotten.merkle_root of version(s) "
                                             f"{', '.join(map(str, sorted(versions)))}"))
    return checks


# --- calibration, independently of app.unlearning.calibration --------------------------------


def analytic_delta_mp(sensitivity: float, noise_std: float, epsilon: float) -> mpmath.mpf:
    """δ(ε, σ) of the analytic Gaussian mechanism ([BW18] Thm 8) in 60-digit arithmetic.

    >>> round(float(analytic_delta_mp(1.0, 1.0, 0.0)), 6)  # 2Φ(1/2) − 1
    0.382925
    """
    with mpmath.workdps(_DPS):
        d, s, e = mpmath.mpf(sensitivity), mpmath.mpf(noise_std), mpmath.mpf(epsilon)
        a = d / (2 * s) - e * s / d
        b = -d / (2 * s) - e * s / d
        return mpmath.ncdf(a) - mpmath.exp(e) * mpmath.ncdf(b)


def _bisect(ok: Any, lo: mpmath.mpf, hi: mpmath.mpf) -> mpmath.mpf:
    """ok(lo) False, ok(hi) True, ok monotone; returns the smallest x with ok(x), to 60 digits."""
    with mpmath.workdps(_DPS):
        for _ in range(_BISECT_STEPS):
            mid = (lo + hi) / 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
            if hi - lo <= hi * mpmath.mpf(10) ** (-40):
                break
        return hi


def epsilon_for_sigma(sensitivity: float, noise_std: float, delta: float) -> float:
    """The smallest ε with δ(ε, σ) ≤ δ; 0 if σ already gives (0, δ)."""
    with mpmath.workdps(_DPS):
        target = mpmath.mpf(delta)

        def ok(eps: mpmath.mpf) -> bool:
            return bool(analytic_delta_mp(sensitivity, noise_std, eps) <= target)

        if ok(mpmath.mpf(0)):
            return 0.0
        hi = mpmath.mpf(1)
        while not ok(hi):
            hi *= 2
        return float(_bisect(ok, mpmath.mpf(0), hi))


def sigma_for_epsilon(sensitivity: float, epsilon: float, delta: float) -> float:
    """The smallest σ with δ(ε, σ) ≤ δ."""
    with mpmath.workdps(_DPS):
        target = mpmath.mpf(delta)

        def ok(sigma: mpmath.mpf) -> bool:
            return bool(analytic_delta_mp(sensitivity, sigma, epsilon) <= target)

        hi = mpmath.mpf(sensitivity)
        while not ok(hi):
            hi *= 2
        lo = hi
        while ok(lo):
            lo /= 2
        return float(_bisect(ok, lo, hi))


def _number(value: Any) -> float:
    if value == "Infinity":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _check_consistency(cert: dict[str, Any]) -> Check:
    g = cert.get("guarantee") or {}
    try:
        delta, rho = _number(g["delta"]), _number(g.get("rho", 0.0))
        problems = []
        if _rel(_number(g["certified_delta"]), delta + rho) > 1e-12:
            problems.append(f"certified_delta {g['certified_delta']} != delta + rho = {delta + rho}")
        if "sensitivity" in cert and _number(cert["sensitivity"]["total"]) != _number(g["sensitivity"]):
            problems.append("guarantee.sensitivity differs from sensitivity.total")
        if "noise" in cert and _number(cert["noise"]["noise_std"]) != _number(g["noise_std"]):
            problems.append("guarantee.noise_std differs from noise.noise_std")
        if "radius" in cert and _number(g["sensitivity"]) > 2 * _number(cert["radius"]) * (1 + 1e-12):
            problems.append(f"sensitivity {g['sensitivity']} exceeds 2C = {2 * cert['radius']}")
    except (KeyError, TypeError, ValueError) as exc:
        return Check("consistency", "FAIL", f"malformed guarantee: {exc!r}")
    if problems:
        return Check("consistency", "FAIL", "; ".join(problems))
    return Check("consistency", "OK", f"certified_delta = delta + rho = {delta + rho:.6g}; Δ ≤ 2C; "
                                      "sections agree")


def _check_calibration(cert: dict[str, Any]) -> list[Check]:
    g = cert.get("guarantee") or {}
    kind = g.get("kind")
    if kind == "exact":
        ok = g.get("epsilon") == 0 and g.get("delta") == 0
        return [Check("calibration", "SKIP" if ok else "FAIL",
                      "exact removal (retrained from scratch): ε = 0, no noise to calibrate"
                      if ok else "exact removal must state epsilon = delta = 0")]
    if kind == "none":
        return [Check("calibration", "SKIP", "training release: nothing forgotten, nothing certified")]
    if g.get("mechanism") != "analytic-gaussian":
        return [Check("calibration", "FAIL", f"unknown guarantee kind/mechanism {kind!r} / "
                                             f"{g.get('mechanism')!r}")]
    checks = [_check_consistency(cert)]
    try:
        sens, sigma = _number(g["sensitivity"]), _number(g["noise_std"])
        eps, delta = _number(g["epsilon"]), _number(g["delta"])
        if not (sens > 0 and math.isfinite(sens) and 0 < delta < 1 and sigma >= 0 and eps >= 0):
            raise ValueError(f"out of range: Δ={sens}, σ={sigma}, ε={eps}, δ={delta}")
    except (KeyError, ValueError) as exc:
        return [*checks, Check("calibration", "FAIL", f"malformed guarantee: {exc}")]
    if sigma == 0:
        status = "OK" if math.isinf(eps) else "FAIL"
        return [*checks, Check("calibration ε", status,
                               f"σ = 0 certifies nothing; certified ε = {g['epsilon']} "
                               + ("(unbounded, as it must be)" if status == "OK" else
                                  "is OVERSTATED"))]
    eps_ind = epsilon_for_sigma(sens, sigma, delta)
    if math.isinf(eps):
        checks.append(Check("calibration ε", "FAIL", f"certificate says ε = Infinity but σ = "
                                                      f"{sigma:g} certifies ε = {eps_ind:.10g}"))
        return checks
    name = f"(Δ={sens:.6g}, σ={sigma:.6g}, δ={delta:.3g})"
    if eps < eps_ind * (1 - _SAFETY_RTOL):
        checks.append(Check("calibration ε", "FAIL", f"certified ε = {eps:.10g} is OVERSTATED: "
                                                      f"σ only certifies ε = {eps_ind:.10g} {name}"))
    elif _rel(eps, eps_ind) > RTOL:
        checks.append(Check("calibration ε", "FAIL", f"certified ε = {eps:.10g} differs from the "
                                                      f"recomputed {eps_ind:.10g} by "
                                                      f"{_rel(eps, eps_ind):.2e} relative {name}"))
    else:
        checks.append(Check("calibration ε", "OK", f"ε{name} recomputed = {eps_ind:.10g} ≤ "
                                                    f"certified {eps:.10g} (rel {_rel(eps, eps_ind):.1e})"))
    sigma_ind = sigma_for_epsilon(sens, eps, delta)
    label = f"(Δ={sens:.6g}, ε={eps:.6g}, δ={delta:.3g})"
    if sigma < sigma_ind * (1 - _SAFETY_RTOL):
        checks.append(Check("calibration σ", "FAIL", f"noise_std = {sigma:.10g} is below the "
                                                      f"{sigma_ind:.10g} that ε needs {label}"))
    elif _rel(sigma, sigma_ind) > RTOL:
        checks.append(Check("calibration σ", "FAIL", f"noise_std = {sigma:.10g} differs from the "
                                                      f"recomputed {sigma_ind:.10g} {label}"))
    else:
        checks.append(Check("calibration σ", "OK", f"σ{label} recomputed = {sigma_ind:.10g} vs "
                                                    f"noise_std {sigma:.10g} (rel "
                                                    f"{_rel(sigma, sigma_ind):.1e})"))
    return checks


# --- entry points -----------------------------------------------------------------------------


def _load_json(path: Path, what: str) -> tuple[dict[str, Any] | None, Check | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, Check(what, "FAIL", f"cannot read {path}: {exc}")
    if not isinstance(data, dict):
        return None, Check(what, "FAIL", f"{path} is not a JSON object")
    return data, None


def verify(certificate: Path, weights: Path | None = None, *, receipt: Path | None = None,
           key: Path | None = None) -> list[Check]:
    """Run every check on the files; never raises for bad input (it becomes a FAIL line)."""
    cert, problem = _load_json(certificate, "certificate")
    if cert is None:
        return [problem] if problem else []
    checks: list[Check] = []
    keys: dict[str, Ed25519PublicKey] | None = None
    if key is not None:
        try:
            keys = load_public_keys(key)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            checks.append(Check("key", "FAIL", f"cannot load a public key from {key}: {exc}"))
            keys = {}
    receipt_data = None
    if receipt is not None:
        receipt_data, problem = _load_json(receipt, "receipt")
        if problem:
            return [*checks, *verify_documents(cert, weights, keys=keys, skip_receipt=True), problem]
    return checks + verify_documents(cert, weights, receipt=receipt_data, keys=keys)


def verify_documents(cert: dict[str, Any], weights: Path | None = None, *,
                     receipt: dict[str, Any] | None = None,
                     keys: dict[str, Ed25519PublicKey] | None = None,
                     skip_receipt: bool = False) -> list[Check]:
    """The checks of :func:`verify` on documents already parsed (the client calls this)."""
    checks = [check_signature(cert, keys), _check_weights(cert, weights)]
    if not skip_receipt:
        checks.extend(_check_receipt(cert, receipt, keys))
    checks.extend(_check_calibration(cert))
    return checks


def main(certificate: Path, weights: Path | None = None, *, receipt: Path | None = None,
         key: Path | None = None, as_json: bool = False) -> int:
    """Print the report; return the exit code (1 if any check failed)."""
    checks = verify(certificate, weights, receipt=receipt, key=key)
    failed = sum(c.failed for c in checks)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for c in checks:
            print(f"{c.status:<4}  {c.name:<15} {c.detail}")
        print(f"{'FAILED' if failed else 'VERIFIED'}: {certificate.name}: "
              f"{sum(c.status == 'OK' for c in checks)} ok, {failed} failed, "
              f"{sum(c.status == 'SKIP' for c in checks)} skipped")
    return 1 if failed else 0
