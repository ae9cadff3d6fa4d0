"""Read the unlearning budget: the ledger of releases (METHOD §7). Pure read."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import LedgerEntry
from app.schemas.budget import BudgetPublic, LedgerRowPublic
from app.services.models import get_model

__all__ = ["budget"]


def budget(session: Session, model_id: str) -> BudgetPublic:
    """Ledger rows of the model by version, with the figures of the newest row.

    ``lineage`` is the newest row's lineage (a retrain starts a new one and resets the ledger);
    ``releases_in_lineage`` counts its ``unlearned`` releases. A model with no row yet reports
    lineage 0, no releases and zero cumulative ε and δ.

    Raises:
        NotFound: Unknown model.
    """
    get_model(session, model_id)
    rows = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.model_id == model_id)
        .order_by(LedgerEntry.version, LedgerEntry.id)
    ).all()
    public_rows = [LedgerRowPublic.model_validate(row) for row in rows]
    if not rows:
        return BudgetPublic(
            model_id=model_id, lineage=0, releases_in_lineage=0,
            cumulative_epsilon=0.0, cumulative_delta=0.0, accountant=None, rows=[],
        )
    last = rows[-1]
    releases = sum(1 for r in rows if r.lineage == last.lineage and r.kind == "unlearned")
    return BudgetPublic(
        model_id=model_id,
        lineage=last.lineage,
        releases_in_lineage=releases,
        cumulative_epsilon=last.cumulative_epsilon,
        cumulative_delta=last.cumulative_delta,
        accountant=last.accountant,
        rows=public_rows,
    )
