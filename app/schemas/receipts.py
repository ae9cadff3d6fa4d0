"""Wire types of deletion receipts and of the public signing keys (issue 5 §1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from app.schemas.common import PublicModel


class ProofStep(PublicModel):
    """One level of a Merkle inclusion proof: the sibling's hash and the side it sits on."""

    side: Literal["left", "right"]
    hash: str = Field(description="SHA-256 of the sibling node, hex.")


class SampleProof(PublicModel):
    """A forgotten sample, the version that forgot it, and its inclusion proof in that version's
    ``forgotten.merkle_root``."""

    sample_id: int = Field(description="The training-row index (what the Merkle tree commits).")
    uploaded_id: str | None = Field(
        default=None, description="The row's sample id in an uploaded dataset (null for a "
                                  "built-in, whose ids are the row indices).")
    version: int
    proof: list[ProofStep]


class ReceiptPublic(PublicModel):
    """What a data subject keeps: the proofs and the signed certificates they check against."""

    schema_: str = Field(alias="schema", serialization_alias="schema")
    request_id: str
    model_id: str
    version: int | None = Field(description="The version the request completed at.")
    commitment: dict[str, str]
    subject_ids: list[str] | None = Field(
        default=None, description="The subjects the request named (null for a sample request).")
    samples: list[SampleProof]
    certificates: list[dict[str, Any]] = Field(
        description="The signed certificate of each version named in samples, by version.")


class SigningKeyPublic(PublicModel):
    """A public key that signs (or signed) certificates; verify with ``lethe verify --key``."""

    key_id: str = Field(description="First 16 hex of SHA-256 of the raw public key.")
    alg: Literal["Ed25519"]
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, base64url (RFC 8032).")
    created_at: str
    active: bool
