"""Read the unlearning budget: the ledger of releases (METHOD §7). Pure read."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, LedgerEntry
from app.schemas.budget import BudgetFigures, BudgetProjection, BudgetPublic, LedgerRowPublic
from app.schemas.models import BudgetCaps
from app.services.budget_policy import Release, releases_that_fit
from app.services.models import get_model

__all__ = ["budget"]


def budget(session: Session, model_id: str) -> BudgetPublic:
    """Caps, consumption, remainder and projection of the model's current lineage, and every
    ledger row by version. A pure read: it writes nothing (METHOD §7).

    ``lineage`` is the newest row's lineage (a retrain starts a new one and resets the budget);
    ``releases_in_lineage`` counts its ``unlearned`` releases. The projection repeats the newest
    unlearning release of the lineage (its m, σ/Δ and ρ) until a cap would break.

    Raises:
        NotFound: Unknown model.
    """
    model = get_model(session, model_id)
    caps = BudgetCaps.model_validate(model.budget)
    n = session.scalar(select(Dataset.n).where(Dataset.id == model.dataset_id)) or 1
    delta = float(model.certification["delta"])
    rows = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.model_id == model_id)
        .order_by(LedgerEntry.version, LedgerEntry.id)
    ).all()
    lineage = rows[-1].lineage if rows else 0
    releases = [Release(r.noise_std / r.sensitivity, r.m, max(0.0, r.delta - delta))
                for r in rows if r.lineage == lineage and r.kind == "unlearned"]
    caps_dict = caps.model_dump()
    # Consumption is what the worker recorded when it published (the newest unlearning row of
    # the lineage); the policy module only projects forward from it.
    newest = next((r for r in reversed(rows) if r.lineage == lineage and r.kind == "unlearned"), None)
    consumed = BudgetFigures(
        epsilon=newest.cumulative_epsilon if newest else 0.0,
        delta=newest.cumulative_delta if newest else 0.0,
        releases=len(releases),
        forgotten_fraction=sum(r.m for r in releases) / n,
    )
    remaining = BudgetFigures(
        epsilon=max(0.0, caps.max_epsilon - consumed.epsilon),
        delta=max(0.0, caps.max_delta - consumed.delta),
        releases=max(0, caps.max_releases - consumed.releases),
        forgotten_fraction=max(0.0, caps.max_forgotten_fraction - consumed.forgotten_fraction),
    )
    last = releases[-1] if releases else None
    projection = BudgetProjection(
        release_size=last.m if last else None,
        releases_that_fit=(releases_that_fit(releases, last, caps_dict, n=n, delta=delta)
                           if last else None),
    )
    return BudgetPublic(
        model_id=model_id,
        lineage=lineage,
        releases_in_lineage=len(releases),
        cumulative_epsilon=consumed.epsilon,
        cumulative_delta=consumed.delta,
        accountant=newest.accountant if newest else None,
        caps=caps,
        consumed=consumed,
        remaining=remaining,
        projection=projection,
        rows=[LedgerRowPublic.model_validate(row) for row in rows],
    )
