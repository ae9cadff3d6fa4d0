"""The forgotten-sample set of each model: which training rows a published version no longer has.

Server-side only (DESIGN.md): never served by any route.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.db.models import ForgottenSample

__all__ = ["forgotten_and_total", "forgotten_versions", "record_forgotten"]

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


def forgotten_and_total(
    session: Session, model_id: str, sample_indices: Iterable[int]
) -> tuple[dict[int, int], int]:
    """:func:`forgotten_versions` of ``sample_indices`` and how many samples the model has
    forgotten in all, in one round trip for up to 500 indices (the intake path asks both): the
    model's count, left-joined with its rows among the indices, so the count comes back even when
    none of them is forgotten.

    Returns:
        ``({sample_index: version that forgot it}, forgotten sample count of the model)``.
    """
    wanted = sorted(set(sample_indices))
    first, rest = wanted[:_IN_CHUNK], wanted[_IN_CHUNK:]
    total = (select(func.count().label("n")).where(ForgottenSample.model_id == model_id)
             .subquery())
    rows = session.execute(
        select(total.c.n, ForgottenSample.sample_index, ForgottenSample.version)
        .select_from(total.outerjoin(ForgottenSample, and_(
            ForgottenSample.model_id == model_id, ForgottenSample.sample_index.in_(first))))
    ).all()
    found = {int(i): int(v) for _, i, v in rows if i is not None}
    if rest:
        found.update(forgotten_versions(session, model_id, rest))
    return found, int(rows[0][0])


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
