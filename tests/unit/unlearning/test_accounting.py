"""Composition of sequential Gaussian releases with the RDP accountant (METHOD §7)."""

from __future__ import annotations

import math

import pytest
from dp_accounting import gaussian_mechanism

from app.unlearning.accounting import (
    MAX_MULTIPLIER,
    AccountingResult,
    compose_gaussian_releases,
    compose_lineage,
)


def test_empty_ledger_is_free() -> None:
    assert compose_gaussian_releases([], 1e-5) == AccountingResult(0.0, 1e-5, "rdp", 0, None)


def test_single_release_upper_bounds_the_exact_epsilon() -> None:
    # RDP is an upper bound; the analytic Gaussian ε is exact for one release.
    for z in [0.5, 1.0, 5.0]:
        res = compose_gaussian_releases([z], 1e-5)
        exact = gaussian_mechanism.get_epsilon_gaussian(z, 1e-5)
        assert exact <= res.epsilon <= 1.5 * exact + 0.1
        assert res.releases == 1 and res.accountant == "rdp" and res.optimal_order is not None


def test_known_rdp_value() -> None:
    # k Gaussian releases of multiplier z have RDP k·α/(2z²); with the conversion of
    # Canonne-Kamath-Steinke (Prop. 12): ε = min_α k·α/(2z²) + log((α−1)/α) − (log δ + log α)/(α−1).
    k, z, delta = 3, 1.0, 1e-5
    res = compose_gaussian_releases([z] * k, delta)
    alpha = res.optimal_order
    assert alpha is not None
    expected = (
        k * alpha / (2 * z * z)
        + math.log1p(-1 / alpha)
        - (math.log(delta) + math.log(alpha)) / (alpha - 1)
    )
    assert res.epsilon == pytest.approx(expected, rel=1e-12)


def test_composition_grows_with_releases() -> None:
    eps = [compose_gaussian_releases([2.0] * k, 1e-5).epsilon for k in (1, 2, 4, 8)]
    assert eps == sorted(eps) and eps[0] < eps[-1]


def test_tiny_multiplier_gives_huge_epsilon_not_a_small_one() -> None:
    # The paper's setting: σ = 0.01, Δ = 40.
    res = compose_gaussian_releases([0.01 / 40], 1e-5)
    exact = gaussian_mechanism.get_epsilon_gaussian(0.01 / 40, 1e-5)
    assert res.epsilon >= exact > 1e6


def test_overflow_is_reported_as_infinity() -> None:
    res = compose_gaussian_releases([1e-160, 1.0], 1e-5)
    assert res.epsilon == math.inf and res.releases == 2


def test_infinite_multiplier_costs_nothing() -> None:
    assert compose_gaussian_releases([math.inf], 1e-5).epsilon == 0.0


@pytest.mark.parametrize("z", [1e154, 1e200, 1e308])
def test_huge_multipliers_are_composed_as_the_cap_not_overflowed(z: float) -> None:
    # dp_accounting squares z: past about 1e154 it raised OverflowError, failing the release.
    for compose in (compose_gaussian_releases, compose_lineage):
        res = compose([z, 2.0], 1e-5)
        capped = compose([MAX_MULTIPLIER, 2.0], 1e-5)
        assert res.epsilon == capped.epsilon
        assert capped.epsilon == pytest.approx(compose([2.0], 1e-5).epsilon, rel=1e-9)


@pytest.mark.parametrize(
    ("multipliers", "delta", "name"),
    [
        ([1.0], 0.0, "delta"),
        ([1.0], 1.0, "delta"),
        ([0.0], 1e-5, "noise_multipliers"),
        ([1.0, -2.0], 1e-5, r"noise_multipliers\[1\]"),
        ([math.nan], 1e-5, "noise_multipliers"),
    ],
)
def test_validation(multipliers: list[float], delta: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        compose_gaussian_releases(multipliers, delta)
