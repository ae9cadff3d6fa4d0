"""σ ↔ ε calibration (METHOD §6) against an independent high-precision evaluation of [BW18] Thm 8.

The reference δ(ε, σ) = Φ(Δ/(2σ) − εσ/Δ) − e^ε·Φ(−Δ/(2σ) − εσ/Δ) is evaluated with mpmath at
60 significant digits (its exponent range is unbounded, so e^ε at ε ~ 10⁷ is exact enough), with no
code shared with the module under test.
"""

from __future__ import annotations

import math

import mpmath
import pytest
from dp_accounting import gaussian_mechanism
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from app.unlearning.calibration import (
    ClassicalEpsilon,
    analytic_delta,
    analytic_epsilon,
    analytic_sigma,
    classical_epsilon,
    classical_sigma,
)


def mp_delta(sensitivity: float, sigma: float, epsilon: float) -> mpmath.mpf:
    with mpmath.workdps(60):
        d, s, e = mpmath.mpf(sensitivity), mpmath.mpf(sigma), mpmath.mpf(epsilon)
        a = d / (2 * s) - e * s / d
        b = -d / (2 * s) - e * s / d
        return mpmath.ncdf(a) - mpmath.exp(e) * mpmath.ncdf(b)


GRID = [
    (1.0, 1.0, 0.0),
    (1.0, 1.0, 1.0),
    (1.0, 0.5, 2.0),
    (2.0, 7.0, 0.1),
    (1.0, 3.0, 0.5),
    (40.0, 0.01, 8.0e6),  # the paper's demo: Δ/σ = 4000
    (40.0, 0.01, 8.017e6),
    (40.0, 0.01, 7.9e6),
    (1.0, 1e-3, 4.9e5),
]


@pytest.mark.parametrize(("sens", "sigma", "eps"), GRID)
def test_delta_matches_high_precision(sens: float, sigma: float, eps: float) -> None:
    ref = mp_delta(sens, sigma, eps)
    got = analytic_delta(sens, sigma, eps)
    assert math.isfinite(got)
    assert got == pytest.approx(float(ref), rel=1e-8, abs=1e-300)


def test_huge_epsilon_is_finite_and_correct() -> None:
    eps = analytic_epsilon(40.0, 0.01, 1e-5)
    assert math.isfinite(eps) and 7.9e6 < eps < 8.2e6
    assert mp_delta(40.0, 0.01, eps) <= 1e-5
    assert mp_delta(40.0, 0.01, eps * (1 - 1e-8)) > 1e-5
    sigma = analytic_sigma(40.0, eps, 1e-5)
    assert sigma == pytest.approx(0.01, rel=1e-8)
    assert mp_delta(40.0, sigma, eps) <= 1e-5


def test_epsilon_zero_closed_form() -> None:
    # At ε = 0, δ(σ) = 2Φ(Δ/(2σ)) − 1, so the smallest σ is Δ/(2·Φ⁻¹((1 + δ)/2)).
    delta = 0.2
    expected = 1.0 / (2 * norm.ppf((1 + delta) / 2))
    assert analytic_sigma(1.0, 0.0, delta) == pytest.approx(expected, rel=1e-10)
    assert analytic_sigma(1.0, 0.0, delta) >= expected * (1 - 1e-14)
    assert analytic_epsilon(1.0, 10 * expected, delta) == 0.0


def test_agrees_with_dp_accounting() -> None:
    for eps, delta in [(0.1, 1e-5), (1.0, 1e-6), (10.0, 1e-3), (1e3, 1e-5)]:
        ref = gaussian_mechanism.get_sigma_gaussian(eps, delta)
        assert analytic_sigma(3.0, eps, delta) == pytest.approx(3.0 * ref, rel=1e-8)


log_eps = st.floats(min_value=-3, max_value=6)
log_delta = st.floats(min_value=-12, max_value=math.log10(0.5))
log_sens = st.floats(min_value=-3, max_value=3)


@settings(max_examples=120, deadline=None)
@given(le=log_eps, ld=log_delta, ls=log_sens)
def test_sigma_never_undershoots(le: float, ld: float, ls: float) -> None:
    eps, delta, sens = 10.0**le, 10.0**ld, 10.0**ls
    sigma = analytic_sigma(sens, eps, delta)
    assert mp_delta(sens, sigma, eps) <= delta  # safe
    assert mp_delta(sens, sigma * (1 - 1e-8), eps) > delta  # and tight


log_ratio = st.floats(min_value=-4, max_value=2)  # σ/Δ from 1e-4 to 100


@settings(max_examples=120, deadline=None)
@given(lr=log_ratio, ld=log_delta, ls=log_sens)
def test_epsilon_never_undershoots(lr: float, ld: float, ls: float) -> None:
    delta, sens = 10.0**ld, 10.0**ls
    sigma = sens * 10.0**lr
    eps = analytic_epsilon(sens, sigma, delta)
    assert math.isfinite(eps)
    assert mp_delta(sens, sigma, eps) <= delta
    if eps > 0:
        assert mp_delta(sens, sigma, eps * (1 - 1e-8)) > delta


@settings(max_examples=60, deadline=None)
@given(le=log_eps, ld=log_delta)
def test_round_trip(le: float, ld: float) -> None:
    eps, delta = 10.0**le, 10.0**ld
    sigma = analytic_sigma(2.0, eps, delta)
    back = analytic_epsilon(2.0, sigma, delta)
    # σ is at or above the exact one, so the ε it certifies is at or below the target.
    assert back <= eps * (1 + 1e-11)
    assert back == pytest.approx(eps, rel=1e-8)


def test_classical_formulas() -> None:
    factor = math.sqrt(2 * math.log(1.25 / 1e-5))
    assert classical_sigma(2.0, 0.5, 1e-5) == pytest.approx(2.0 * factor / 0.5, rel=1e-15)
    assert classical_sigma(2.0, 0.5, 1e-5) >= 2.0 * factor / 0.5
    res = classical_epsilon(2.0, 10.0, 1e-5)
    assert res == ClassicalEpsilon(res.epsilon, valid=True)
    assert res.epsilon == pytest.approx(2.0 * factor / 10.0, rel=1e-15)
    big = classical_epsilon(40.0, 0.01, 1e-5)
    assert big.epsilon == pytest.approx(4000 * factor) and not big.valid
    # Analytic needs less noise than classical wherever classical is valid.
    assert analytic_sigma(2.0, 0.5, 1e-5) < classical_sigma(2.0, 0.5, 1e-5)


@pytest.mark.parametrize("eps", [0.0, 1.0, 5.0])
def test_classical_sigma_only_below_one(eps: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        classical_sigma(1.0, eps, 1e-5)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: analytic_delta(0.0, 1.0, 1.0), "sensitivity"),
        (lambda: analytic_delta(1.0, -1.0, 1.0), "noise_std"),
        (lambda: analytic_delta(1.0, 1.0, -1.0), "epsilon"),
        (lambda: analytic_sigma(1.0, 1.0, 0.0), "delta"),
        (lambda: analytic_sigma(1.0, 1.0, 1.0), "delta"),
        (lambda: analytic_sigma(1.0, math.inf, 0.1), "epsilon"),
        (lambda: analytic_epsilon(1.0, 0.0, 0.1), "noise_std"),
        (lambda: analytic_epsilon(math.nan, 1.0, 0.1), "sensitivity"),
        (lambda: classical_epsilon(1.0, 1.0, 2.0), "delta"),
    ],
)
def test_validation_names_the_argument(call, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=name):
        call()
