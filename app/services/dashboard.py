"""What the admin dashboard shows beyond the public routes: a model's request queue and jobs in
progress, and a page of versions with their certificates' verification status.

Pure reads (no writes, no HTTP). Verification reuses :mod:`app.verify` (the offline checker of
``lethe verify``) against the public keys the service lists in ``GET /v1/keys``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import DeletionRequest, Job, Version
from app.services.models import get_model
from app.verify import check_signature

__all__ = ["RECENT_FAILURES", "STATUSES", "keys_by_id", "request_summary", "versions_page"]

STATUSES = ("pending", "batched", "applying", "completed", "failed", "canceled")
"""Deletion request statuses, in lifecycle order (DESIGN.md)."""
RECENT_FAILURES = 10
"""How many of the newest failed requests the summary lists."""
ACTIVE_JOB_STATUSES = ("queued", "running")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def request_summary(session: Session, model_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The model's request queue and jobs in progress.

    Args:
        now: The clock for ages (default: the current UTC time).

    Returns:
        ``counts`` (every status, 0 included), ``total``, ``oldest_pending_age_s`` (seconds since
        the oldest ``pending`` request was created, or ``None``), ``recent_failures`` (the
        newest :data:`RECENT_FAILURES` failed requests: ``id``, ``error``, ``sample_count``,
        ``updated_at``) and ``active_jobs`` (queued or running: ``id``, ``kind``, ``status``,
        ``progress`` in [0, 1], ``created_at``, ``started_at``).

    Raises:
        NotFound: Unknown model.
    """
    get_model(session, model_id)
    now = now or datetime.now(timezone.utc)
    rows = session.execute(
        select(DeletionRequest.status, func.count())
        .where(DeletionRequest.model_id == model_id)
        .group_by(DeletionRequest.status)
    ).all()
    counts = dict.fromkeys(STATUSES, 0) | {str(status): int(n) for status, n in rows}
    oldest = session.scalar(
        select(func.min(DeletionRequest.created_at))
        .where(DeletionRequest.model_id == model_id, DeletionRequest.status == "pending")
    )
    failures = session.scalars(
        select(DeletionRequest)
        .where(DeletionRequest.model_id == model_id, DeletionRequest.status == "failed")
        .order_by(DeletionRequest.updated_at.desc(), DeletionRequest.id)
        .limit(RECENT_FAILURES)
    ).all()
    jobs = session.scalars(
        select(Job)
        .where(Job.model_id == model_id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(Job.created_at, Job.id)
    ).all()
    return {
        "model_id": model_id,
        "counts": counts,
        "total": sum(counts.values()),
        "oldest_pending_age_s": (now - _utc(oldest)).total_seconds() if oldest else None,
        "recent_failures": [{"id": r.id, "error": r.error, "sample_count": len(r.sample_ids or []),
                             "updated_at": r.updated_at} for r in failures],
        "active_jobs": [{"id": j.id, "kind": j.kind, "status": j.status, "progress": j.progress,
                         "created_at": j.created_at, "started_at": j.started_at} for j in jobs],
    }


def keys_by_id(public_keys: Sequence[dict[str, Any]]) -> dict[str, Ed25519PublicKey]:
    """Ed25519 keys by key id from the entries of ``signing.public_keys`` (``/v1/keys``); an entry
    whose id is not the first 16 hex of SHA-256 of its bytes is left out."""
    out = {}
    for entry in public_keys:
        text = str(entry["public_key"])
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if hashlib.sha256(raw).hexdigest()[:16] == entry["key_id"]:
            out[entry["key_id"]] = Ed25519PublicKey.from_public_bytes(raw)
    return out


def _verification(version: Version, keys: dict[str, Ed25519PublicKey]) -> dict[str, str]:
    """``OK`` when the signature checks with a listed key and the certificate names the stored
    file's SHA-256; else ``FAIL`` with the reason."""
    cert = version.certificate or {}
    signature = check_signature(cert, keys)
    if signature.failed:
        return {"status": "FAIL", "detail": signature.detail}
    if cert.get("weights_sha256") != version.sha256:
        return {"status": "FAIL", "detail": "the certificate's weights_sha256 is not the file's"}
    return {"status": "OK", "detail": signature.detail}


def versions_page(session: Session, model_id: str, keys: dict[str, Ed25519PublicKey], *,
                  limit: int, offset: int) -> dict[str, Any]:
    """Versions ``offset … offset+limit-1`` by number, newest first, each with ``verification``.

    Returns:
        ``{"total", "limit", "offset", "items"}``; items carry the columns of ``VersionPublic``
        plus ``verification`` ``{"status": "OK" | "FAIL", "detail"}``.

    Raises:
        NotFound: Unknown model.
    """
    get_model(session, model_id)
    total = session.scalar(select(func.count()).select_from(Version)
                           .where(Version.model_id == model_id)) or 0
    versions = session.scalars(
        select(Version).where(Version.model_id == model_id)
        .order_by(Version.number.desc()).limit(limit).offset(offset)
    ).all()
    return {"total": total, "limit": limit, "offset": offset,
            "items": [{"number": v.number, "kind": v.kind, "parent_number": v.parent_number,
                       "lineage": v.lineage, "sha256": v.sha256, "size": v.size_bytes,
                       "created_at": v.created_at, "metrics": v.metrics or {},
                       "verification": _verification(v, keys)} for v in versions]}
