"""The budget caps of a lineage (METHOD §7): may a release be published, and how many more fit?

Pure functions over plain numbers, shared by the worker (before publishing) and by the budget
read (projection). A lineage is the run of releases since the last exact retrain; its Gaussian
releases are composed by :func:`app.unlearning.accounting.compose_lineage` (no torch here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.unlearning.accounting import compose_lineage

CAP_NAMES = ("max_epsilon", "max_delta", "max_releases", "max_forgotten_fraction")


@dataclass(frozen=True)
class Release:
    """One unlearning release as the ledger sees it: σ/Δ, samples removed m, solver failure ρ."""

    noise_multiplier: float
    m: int
    rho: float = 0.0


@dataclass(frozen=True)
class LineageFigures:
    """Cumulative figures of a lineage, and the caps they break (empty when within all)."""

    epsilon: float
    delta: float
    accountant: str
    releases: int
    forgotten: int
    forgotten_fraction: float
    broken: list[str] = field(default_factory=list)

    @property
    def within_caps(self) -> bool:
        return not self.broken


def lineage_figures(releases: Sequence[Release], caps: dict[str, Any], *, n: int,
                    delta: float) -> LineageFigures:
    """Compose ``releases`` (a whole lineage) and check every cap.

    Args:
        releases: The lineage's unlearning releases in order (a retrain starts an empty lineage).
        caps: ``max_epsilon``, ``max_delta``, ``max_releases``, ``max_forgotten_fraction``.
        n: |D|, the size of the training split.
        delta: The per-release mechanism δ; the lineage is accounted at this δ, and every
            release's ρ adds to it ([Z24] §3.3: the LiSSA bound holds with probability 1 − ρ).

    Returns:
        :class:`LineageFigures`; ``broken`` names each cap exceeded, with the figures.
    """
    if not releases:
        return LineageFigures(0.0, 0.0, "none", 0, 0, 0.0)
    multipliers = [r.noise_multiplier for r in releases]
    if min(multipliers) > 0:
        accounted = compose_lineage(multipliers, delta)
        epsilon, accountant = accounted.epsilon, accounted.accountant
    else:  # a noiseless release certifies nothing: ε is unbounded
        epsilon, accountant = float("inf"), "none"
    cum_delta = delta + sum(r.rho for r in releases)
    forgotten = sum(r.m for r in releases)
    fraction = forgotten / n
    broken = []
    if epsilon > caps["max_epsilon"]:
        broken.append(f"cumulative ε {epsilon:.6g} > max_epsilon {caps['max_epsilon']:.6g}")
    if cum_delta > caps["max_delta"]:
        broken.append(f"cumulative δ {cum_delta:.6g} > max_delta {caps['max_delta']:.6g}")
    if len(releases) > caps["max_releases"]:
        broken.append(f"{len(releases)} releases > max_releases {caps['max_releases']}")
    if fraction > caps["max_forgotten_fraction"]:
        broken.append(f"forgotten fraction {fraction:.6g} > max_forgotten_fraction "
                      f"{caps['max_forgotten_fraction']:.6g}")
    return LineageFigures(epsilon, cum_delta, accountant, len(releases), forgotten, fraction, broken)


def releases_that_fit(releases: Sequence[Release], next_release: Release, caps: dict[str, Any], *,
                      n: int, delta: float, limit: int = 1000) -> int:
    """How many more releases like ``next_release`` fit under the caps (at most ``limit``).

    Every cumulative figure grows with each release, so the count is found by bisection.
    """
    def fits(k: int) -> bool:
        lineage = list(releases) + [next_release] * k
        return lineage_figures(lineage, caps, n=n, delta=delta).within_caps

    hi = min(limit, max(0, int(caps["max_releases"]) - len(releases)))
    if not fits(0):
        return 0
    lo = 0  # invariant: fits(lo)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
