"""Deletion receipts: proof that a completed request's samples were forgotten (issue 5 §1).

A receipt names, for each sample id of the request, the version that forgot it (the version whose
publish transaction recorded it in ``forgotten_samples``), the id's Merkle inclusion proof in that
version's commitment ``forgotten.merkle_root`` (the tree over the ids that version NEWLY forgot,
:mod:`app.services.merkle`), and the signed certificate of every such version. A request whose ids
an earlier version had already forgotten points at that earlier version for those ids.

The committed ids are training-row indices. For an uploaded dataset each sample also carries its
uploaded id (``uploaded_id``), and the receipt the subjects the request named: the certificate's
``dataset.checksum_sha256`` is the SHA-256 of the uploaded ``.npz``, whose ``sample_ids[i]`` names
row i, so whoever holds the file can check that mapping too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, ForgottenSample, Model, Version
from app.errors import StateConflict
from app.services.forgotten import forgotten_versions
from app.services.id_lookup import sample_ids_of_rows
from app.services.merkle import COMMITMENT_SCHEME, merkle_proofs
from app.services.requests import get_request

__all__ = ["RECEIPT_SCHEMA", "build_receipt"]

RECEIPT_SCHEMA = "lethe.receipt/v1"


def build_receipt(session: Session, request_id: str) -> dict[str, Any]:
    """The receipt of a completed deletion request.

    Returns:
        ``{schema, request_id, model_id, version, commitment, subject_ids, samples: [{sample_id,
        uploaded_id, version, proof}], certificates: [signed certificate, by version]}``;
        ``subject_ids`` and ``uploaded_id`` are ``None`` unless the request named subjects / the
        dataset was uploaded.

    Raises:
        NotFound: Unknown request.
        StateConflict: The request is not ``completed``, or a sample is not recorded as forgotten.
    """
    request = get_request(session, request_id)
    if request.status != "completed":
        raise StateConflict(f"deletion request {request_id!r} is {request.status}, not completed; "
                            "a receipt exists only for a completed request",
                            request_status=request.status)
    ids = sorted(int(i) for i in request.sample_ids)
    forgot = forgotten_versions(session, request.model_id, ids)
    missing = [i for i in ids if i not in forgot]
    if missing:
        raise StateConflict(f"{len(missing)} sample(s) of request {request_id!r} are not recorded "
                            "as forgotten", sample_ids=missing[:20])
    by_version: dict[int, list[int]] = {}
    for sid in ids:
        by_version.setdefault(forgot[sid], []).append(sid)
    proofs: dict[int, list[dict[str, str]]] = {}
    certificates = []
    for number, targets in sorted(by_version.items()):
        committed = session.scalars(select(ForgottenSample.sample_index).where(
            ForgottenSample.model_id == request.model_id, ForgottenSample.version == number)).all()
        proofs.update(merkle_proofs((int(i) for i in committed), targets))
        version = session.scalar(select(Version).where(Version.model_id == request.model_id,
                                                       Version.number == number))
        if version is None:
            raise StateConflict(f"version {number} of model {request.model_id!r} is missing",
                                version=number)
        certificates.append(version.certificate)
    dataset = session.get_one(Dataset, session.get_one(Model, request.model_id).dataset_id)
    uploaded = (sample_ids_of_rows(session, dataset.id, ids) if dataset.storage_key is not None
                else {})
    return {
        "schema": RECEIPT_SCHEMA,
        "request_id": request.id,
        "model_id": request.model_id,
        "version": request.version,
        "commitment": COMMITMENT_SCHEME,
        "subject_ids": request.subject_ids,
        "samples": [{"sample_id": sid, "uploaded_id": uploaded.get(sid), "version": forgot[sid],
                     "proof": proofs[sid]} for sid in ids],
        "certificates": certificates,
    }
