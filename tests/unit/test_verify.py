"""``lethe verify``: untampered certificates pass; tampering with any field, the weights, a proof,
the signature or the key fails; a dishonest signer's overstated ε fails the calibration check."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app import verify
from app.cli import cli
from app.services import signing
from app.services.merkle import COMMITMENT_SCHEME, merkle_proofs, merkle_root
from app.settings import Settings
from app.unlearning.calibration import analytic_epsilon, analytic_sigma

IDS = [100, 101, 105, 117, 129]
WEIGHTS = b"safetensors-bytes" * 100


def unlearning_body(version: int = 1, *, ids: list[int] = IDS, weights: bytes = WEIGHTS,
                    sensitivity: float = 40.0, noise_std: float = 0.01,
                    delta: float = 1e-5, rho: float = 0.0) -> dict[str, Any]:
    epsilon = analytic_epsilon(sensitivity, noise_std, delta)
    return {
        "schema": "lethe.certificate/v1",
        "model": {"id": "m1", "name": "digits-mlp", "architecture": "mlp"},
        "method": "newton-lissa", "version": version, "lineage": 0,
        "parent_version": version - 1, "parent_weights_sha256": "ab" * 32,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "forgotten": {"m": len(ids), "merkle_root": merkle_root(ids),
                      "commitment": COMMITMENT_SCHEME, "retain_size": 1437 - len(ids)},
        "radius": 20.0, "damping": 0.01,
        "sensitivity": {"newton_term": "Infinity", "solver_term": 3.5, "total": sensitivity,
                        "bounded_by_radius": True, "reason": "λ + λ_min ≤ 0", "rho": rho},
        "noise": {"noise_std": noise_std, "calibrated_from": "fixed noise_std"},
        "guarantee": {"kind": "(epsilon, delta)-certified unlearning",
                      "mechanism": "analytic-gaussian", "sensitivity": sensitivity,
                      "noise_std": noise_std, "epsilon": epsilon, "delta": delta, "rho": rho,
                      "certified_delta": delta + rho,
                      "classical_gaussian": {"epsilon": 1e7, "valid": False}},
        "budget": {"accountant": "rdp", "cumulative_epsilon": epsilon, "cumulative_delta": delta},
        "metrics": {"accuracy": {"forget": 0.9, "retain": 0.95, "test": 0.93}},
        "solver": {"minibatch_seed": 2**62 + 7, "iterations": 200},
        "issued_at": "2026-11-29T19:00:00+00:00",
    }


class Files:
    """A signed certificate, its weights, a receipt and the key list, on disk."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root, self.settings = root, settings
        self.cert = signing.sign_certificate(unlearning_body(), settings)
        self.receipt = {
            "schema": "lethe.receipt/v1", "request_id": "r1", "model_id": "m1", "version": 1,
            "samples": [{"sample_id": i, "version": 1, "proof": p}
                        for i, p in merkle_proofs(IDS, IDS).items()],
            "certificates": [self.cert],
        }
        self.weights_bytes = WEIGHTS
        self.keys = signing.public_keys(settings)

    def write(self) -> dict[str, Path]:
        paths = {name: self.root / name for name in
                 ("cert.json", "weights.safetensors", "receipt.json", "keys.json")}
        paths["cert.json"].write_text(json.dumps(self.cert))
        paths["weights.safetensors"].write_bytes(self.weights_bytes)
        paths["receipt.json"].write_text(json.dumps(self.receipt))
        paths["keys.json"].write_text(json.dumps(self.keys))
        return paths

    def run(self) -> list[verify.Check]:
        p = self.write()
        return verify.verify(p["cert.json"], p["weights.safetensors"], receipt=p["receipt.json"],
                             key=p["keys.json"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def files(tmp_path: Path, settings: Settings) -> Files:
    return Files(tmp_path, settings)


def failed(checks: list[verify.Check]) -> set[str]:
    return {c.name for c in checks if c.failed}


def test_untampered_passes_every_check(files: Files) -> None:
    checks = files.run()
    assert {c.name: c.status for c in checks} == {
        "signature": "OK", "weights": "OK", "receipt": "OK", "consistency": "OK",
        "calibration ε": "OK", "calibration σ": "OK"}


def test_cli_prints_each_check_and_exits_zero(files: Files) -> None:
    p = files.write()
    result = CliRunner().invoke(cli, ["verify", str(p["cert.json"]), str(p["weights.safetensors"]),
                                      "--receipt", str(p["receipt.json"]), "--key", str(p["keys.json"])])
    assert result.exit_code == 0, result.output
    assert result.output.count("OK  ") == 6 and "VERIFIED" in result.output
    as_json = CliRunner().invoke(cli, ["verify", str(p["cert.json"]), "--key", str(p["keys.json"]),
                                       "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["ok"] is True
    files.weights_bytes = b"X" + WEIGHTS[1:]
    p = files.write()
    bad = CliRunner().invoke(cli, ["verify", str(p["cert.json"]), str(p["weights.safetensors"]),
                                   "--key", str(p["keys.json"])])
    assert bad.exit_code == 1 and "FAIL  weights" in bad.output


def _mutate(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    if isinstance(value, dict):
        return value | {"tampered": 1}
    if isinstance(value, list):
        return [*value, 0]
    raise AssertionError(value)


BODY = signing.normalize(unlearning_body())


@pytest.mark.parametrize("field", sorted(BODY))
def test_tampering_any_top_level_field_fails(files: Files, field: str) -> None:
    files.cert[field] = _mutate(files.cert[field])
    files.receipt["certificates"] = [files.cert]
    assert "signature" in failed(files.run())


@pytest.mark.parametrize("field", sorted(BODY["guarantee"]))
def test_tampering_any_guarantee_field_fails(files: Files, field: str) -> None:
    files.cert["guarantee"][field] = _mutate(files.cert["guarantee"][field])
    files.receipt["certificates"] = [files.cert]
    assert "signature" in failed(files.run())


def test_removing_a_field_fails(files: Files) -> None:
    del files.cert["budget"]
    assert "signature" in failed(files.run())


def test_flipping_a_weights_byte_fails(files: Files) -> None:
    files.weights_bytes = WEIGHTS[:7] + bytes([WEIGHTS[7] ^ 1]) + WEIGHTS[8:]
    assert failed(files.run()) == {"weights"}


def test_tampered_proof_hash_or_id_fails(files: Files) -> None:
    step = files.receipt["samples"][2]["proof"][0]
    step["hash"] = ("0" if step["hash"][0] != "0" else "1") + step["hash"][1:]
    assert failed(files.run()) == {"receipt"}
    fresh = Files(files.root, files.settings)
    fresh.receipt["samples"][0]["sample_id"] = 102  # claims an id that was never forgotten
    assert failed(fresh.run()) == {"receipt"}


def test_receipt_for_another_model_fails(files: Files) -> None:
    files.receipt["model_id"] = "m2"
    assert failed(files.run()) == {"receipt"}


def test_tampered_signature_fails(files: Files) -> None:
    value = files.cert["signature"]["value"]
    files.cert["signature"]["value"] = ("A" if value[0] != "A" else "B") + value[1:]
    files.receipt["certificates"] = [files.cert]
    assert "signature" in failed(files.run())
    files.cert["signature"]["key_id"] = "0" * 16
    assert "signature" in failed(files.run())
    del files.cert["signature"]
    assert "signature" in failed(files.run())


def test_another_key_or_no_key_fails(files: Files, tmp_path: Path) -> None:
    other = Settings(home=tmp_path / "other")
    files.keys = signing.public_keys(other)
    assert "signature" in failed(files.run())
    # A key list that names the right id with another key's bytes is refused outright.
    files.keys = [files.keys[0] | {"key_id": files.cert["signature"]["key_id"]}]
    assert {"key", "signature"} <= failed(files.run())
    p = files.write()
    checks = verify.verify(p["cert.json"], p["weights.safetensors"])
    sig = next(c for c in checks if c.name == "signature")
    assert sig.failed and "--key" in sig.detail


def test_pem_public_key_is_accepted(files: Files) -> None:
    from cryptography.hazmat.primitives import serialization

    key = signing.active_signing_key(files.settings).private_key.public_key()
    pem = files.root / "key.pem"
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    p = files.write()
    checks = verify.verify(p["cert.json"], key=pem)
    assert not failed(checks)


def test_dishonest_signer_overstating_epsilon_fails_calibration(files: Files) -> None:
    body = unlearning_body()
    body["guarantee"]["epsilon"] *= 0.999  # claims more privacy than σ gives
    files.cert = signing.sign_certificate(body, files.settings)
    files.receipt["certificates"] = [files.cert]
    checks = files.run()
    assert failed(checks) == {"calibration ε", "calibration σ"}
    assert "OVERSTATED" in next(c.detail for c in checks if c.name == "calibration ε")


def test_dishonest_signer_with_less_noise_fails(files: Files) -> None:
    body = unlearning_body()
    body["guarantee"]["noise_std"] = body["noise"]["noise_std"] = 0.009
    files.cert = signing.sign_certificate(body, files.settings)
    files.receipt["certificates"] = [files.cert]
    assert {"calibration ε", "calibration σ"} <= failed(files.run())


def test_inconsistent_sections_fail(files: Files) -> None:
    body = unlearning_body(rho=0.0)
    body["guarantee"]["certified_delta"] = 2e-5
    files.cert = signing.sign_certificate(body, files.settings)
    files.receipt["certificates"] = [files.cert]
    assert failed(files.run()) == {"consistency"}


@pytest.mark.parametrize(("sensitivity", "epsilon", "delta"),
                         [(1.0, 0.5, 1e-5), (40.0, 3.0, 1e-6), (2.0, 1e4, 1e-5)])
def test_target_epsilon_calibration_verifies(files: Files, sensitivity: float, epsilon: float,
                                             delta: float) -> None:
    sigma = analytic_sigma(sensitivity, epsilon, delta)
    body = unlearning_body(sensitivity=sensitivity, noise_std=sigma, delta=delta)
    body["guarantee"]["epsilon"] = epsilon
    body["radius"] = 20.0
    files.cert = signing.sign_certificate(body, files.settings)
    files.receipt["certificates"] = [files.cert]
    assert not failed(files.run())


def test_lissa_rho_is_part_of_the_certified_delta(files: Files) -> None:
    files.cert = signing.sign_certificate(unlearning_body(rho=1e-6), files.settings)
    files.receipt["certificates"] = [files.cert]
    assert not failed(files.run())


def test_exact_and_training_certificates_skip_calibration(files: Files) -> None:
    for guarantee in ({"kind": "exact", "epsilon": 0.0, "delta": 0.0},
                      {"kind": "none", "detail": "training"}):
        body = unlearning_body() | {"guarantee": guarantee}
        files.cert = signing.sign_certificate(body, files.settings)
        files.receipt["certificates"] = [files.cert]
        checks = files.run()
        assert not failed(checks)
        assert next(c for c in checks if c.name == "calibration").status == "SKIP"


def test_rotation_keeps_old_certificates_verifiable(files: Files) -> None:
    old = files.cert
    signing.rotate_signing_key(files.settings)
    files.keys = signing.public_keys(files.settings)
    assert not failed(files.run())  # the old certificate, against the new key list
    files.cert = signing.sign_certificate(unlearning_body(), files.settings)
    assert files.cert["signature"]["key_id"] != old["signature"]["key_id"]
    files.receipt["certificates"] = [files.cert]
    assert not failed(files.run())


def test_receipt_spanning_two_versions(files: Files) -> None:
    """Ids an earlier version forgot are proven against that version's signed certificate."""
    early = [3, 4]
    cert0 = signing.sign_certificate(unlearning_body(1, ids=early) | {"version": 0}, files.settings)
    files.receipt["samples"] += [{"sample_id": i, "version": 0, "proof": p}
                                 for i, p in merkle_proofs(early, early).items()]
    files.receipt["certificates"] = [cert0, files.cert]
    checks = files.run()
    assert not failed(checks)
    assert "version(s) 0, 1" in next(c.detail for c in checks if c.name == "receipt")
    tampered = copy.deepcopy(cert0)
    tampered["forgotten"]["merkle_root"] = merkle_root([3, 4, 5])
    files.receipt["certificates"] = [tampered, files.cert]
    assert {"receipt v0 signature", "receipt"} <= failed(files.run())


def test_unreadable_inputs_fail_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert failed(verify.verify(bad)) == {"certificate"}
    assert verify.main(tmp_path / "missing.json") == 1


def test_independent_calibration_against_closed_form() -> None:
    # ε = 0: δ(0, σ) = 2Φ(Δ/(2σ)) − 1, so σ for (0, δ) is Δ / (2 Φ⁻¹((1 + δ)/2)).
    from scipy.stats import norm

    sigma = verify.sigma_for_epsilon(1.0, 0.0, 0.1)
    assert sigma == pytest.approx(1.0 / (2 * norm.ppf(0.55)), rel=1e-9)
    # Large ε (paper settings): agrees with Lethe's log-space implementation.
    assert verify.epsilon_for_sigma(40.0, 0.01, 1e-5) == pytest.approx(
        analytic_epsilon(40.0, 0.01, 1e-5), rel=1e-9)
