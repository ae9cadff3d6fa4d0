"""Wire types of the unlearning budget (the ledger of METHOD §7)."""

from __future__ import annotations

from pydantic import Field

from app.schemas.common import PublicModel, UtcDatetime
from app.schemas.models import BudgetCaps


class LedgerRowPublic(PublicModel):
    """One release: m forgotten samples, |D_r| = ``retain_size``, Δ, σ, (ε, δ), running totals."""

    version: int
    lineage: int
    kind: str
    m: int
    retain_size: int
    sensitivity: float
    noise_std: float
    epsilon: float
    delta: float
    cumulative_epsilon: float
    cumulative_delta: float
    accountant: str
    created_at: UtcDatetime


class BudgetFigures(PublicModel):
    """Cumulative figures of the current lineage, or what remains of each cap."""

    epsilon: float
    delta: float
    releases: int
    forgotten_fraction: float


class BudgetProjection(PublicModel):
    """How many more releases like the newest one (same m, σ/Δ and ρ) fit under every cap."""

    release_size: int | None = Field(description="m of the release the projection repeats.")
    releases_that_fit: int | None


class BudgetPublic(PublicModel):
    """Budget of a model (METHOD §7): caps, consumption and remainder of the current lineage (the
    releases since the last exact retrain), a projection, and every ledger row by version."""

    model_id: str
    lineage: int
    releases_in_lineage: int = Field(description="Unlearned releases since the lineage began.")
    cumulative_epsilon: float
    cumulative_delta: float
    accountant: str | None
    caps: BudgetCaps
    consumed: BudgetFigures
    remaining: BudgetFigures
    projection: BudgetProjection
    rows: list[LedgerRowPublic]
