"""Wire types of the unlearning budget (the ledger of METHOD §7)."""

from __future__ import annotations

from pydantic import Field

from app.schemas.common import PublicModel, UtcDatetime


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


class BudgetPublic(PublicModel):
    """Budget of a model: the figures of its newest ledger row, and every row by version."""

    model_id: str
    lineage: int
    releases_in_lineage: int = Field(description="Unlearned releases since the lineage began.")
    cumulative_epsilon: float
    cumulative_delta: float
    accountant: str | None
    rows: list[LedgerRowPublic]
