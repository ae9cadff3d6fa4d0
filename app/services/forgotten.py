"""The forgotten-sample set of each model: which training rows a published version no longer has.

Server-side only (DESIGN.md): never served by any route.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ForgottenSample

__all__ = ["forgotten_versions", "record_forgotten"]

_IN_CHUNK = 500  # bound parameters per IN (...) query; SQLite allows 32766


def forgotten_versions(
    session: Session, model_id: str, sample_indices: Iterable[int] | None = None
) -> dict[int, int]:
    """``{sample_index: version that forgot it}`` for the given indices (all if ``None``)."""
    if sample_indices is None:
        rows = session.execute(
            select(ForgottenSample.sample_index, ForgottenSample.version).where(
                ForgottenSample.model_id == model_id
            )
        ).all()
        return {int(i): int(v) for i, v in rows}
    wanted = sorted(set(sample_indices))
    found: dict[int, int] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = session.execute(
            select(ForgottenSample.sample_index, ForgottenSample.version).where(
                ForgottenSample.model_id == model_id, ForgottenSample.sample_index.in_(chunk)
            )
        ).all()
        found.update({int(i): int(v) for i, v in rows})
    return found


def record_forgotten(
    session: Session, model_id: str, sample_indices: Iterable[int], version: int
) -> int:
    """Record that ``version`` no longer contains these samples; already-recorded ones keep their
    earlier version. Call it in the publish transaction. Returns the number of rows added."""
    wanted = set(int(i) for i in sample_indices)
    new = sorted(wanted - forgotten_versions(session, model_id, wanted).keys())
    session.add_all(
        ForgottenSample(model_id=model_id, sample_index=i, version=version) for i in new
    )
    session.flush()
    return len(new)
