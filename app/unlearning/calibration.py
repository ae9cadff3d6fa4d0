"""Noise calibration σ ↔ ε for the Gaussian mechanism (METHOD §6).

A release w + σ·ξ, ξ ~ N(0, I), of a quantity with ℓ₂ sensitivity Δ is (ε, δ)-DP iff

    δ(ε, σ) = Φ(Δ/(2σ) − εσ/Δ) − e^ε·Φ(−Δ/(2σ) − εσ/Δ) ≤ δ

(analytic Gaussian mechanism, Balle & Wang, "Improving the Gaussian mechanism for differential
privacy", ICML 2018, arXiv 1805.06530, Thm 8; cited [BW18]). δ(ε, σ) decreases in both ε and σ.

Numerics: the paper's settings (Δ = 40, σ = 0.01, so Δ/σ = 4000) certify ε in the millions, where
e^ε overflows and Φ(·) underflows. Everything is evaluated in log space, log δ = log Φ(a) +
log(1 − exp(ε + log Φ(b) − log Φ(a))), with :func:`scipy.special.log_ndtr`. Decisions (is δ(σ) ≤
δ?) use an upper bound of log δ that widens the rounding error of that expression by a margin
proportional to its magnitudes, so the search never accepts a σ (or ε) on rounding luck.

Google's ``dp_accounting.gaussian_mechanism`` (the same [BW18] formula for Δ = 1, solved by
Brent's method) seeds the search; a bracket around its answer is verified with the formula above
and bisected, returning the SAFE end: the σ returned is never below the smallest valid σ, the ε
returned never below the smallest valid ε.

The classical mechanism σ = Δ·√(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Thm A.1) is valid only for
0 < ε < 1; [Z24] applies it at larger ε, and a certificate that shows that figure must say so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from dp_accounting import gaussian_mechanism
from scipy.special import log_ndtr

__all__ = [
    "ClassicalEpsilon",
    "analytic_delta",
    "analytic_epsilon",
    "analytic_sigma",
    "classical_epsilon",
    "classical_sigma",
]

_RTOL = 1e-12  # relative width of the final bisection bracket
_ULP = 2.0**-52


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)):
        raise ValueError(f"delta must be a real number, got {delta!r}")
    if not (0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return float(delta)


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)):
        raise ValueError(f"epsilon must be a real number, got {epsilon!r}")
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon!r}")
    return float(epsilon)


def _log1mexp(x: float) -> float:
    """log(1 − eˣ) for x ≤ 0, stable (Mächler 2012); −inf at x = 0."""
    if x >= 0:
        return -math.inf
    if x > -math.log(2):
        return math.log(-math.expm1(x))
    return math.log1p(-math.exp(x))


def _log_delta(sensitivity: float, noise_std: float, epsilon: float, *, upper: bool) -> float:
    """log δ(ε, σ) of [BW18] Thm 8; with ``upper`` a rounding-safe upper bound."""
    half = sensitivity / (2.0 * noise_std)
    shift = epsilon * noise_std / sensitivity
    a = half - shift
    b = -half - shift
    log_pa = float(log_ndtr(a))
    log_pb = float(log_ndtr(b))
    x = epsilon + log_pb - log_pa  # log of e^ε Φ(b)/Φ(a), which is < 0 in exact arithmetic
    if not upper:
        return log_pa + _log1mexp(x)
    # Rounding: a and b each carry ≤ 3 roundings of terms bounded by |b| = Δ/(2σ) + εσ/Δ, so
    # |Δa|, |Δb| ≤ 3·ulp·|b|; d log Φ(t)/dt ≤ |t| + 1, so log Φ(a), log Φ(b) move by at most
    # 3·ulp·(|a| + |b| + 2)·|b| ≤ 8·ulp·(1 + a² + b²) together; log_ndtr is accurate to a few
    # ulps, and forming x loses a few ulps of ε + |log Φ(a)| + |log Φ(b)|. 16× covers the sum.
    err = 16 * _ULP * (1.0 + epsilon + abs(log_pb) + abs(log_pa) + a * a + b * b)
    if x - err >= 0:
        # The margin swallowed the (always negative) exponent: fall back to δ ≤ Φ(a).
        return log_pa + err
    return log_pa + err + _log1mexp(x - err)


def analytic_delta(sensitivity: float, noise_std: float, epsilon: float) -> float:
    """δ(ε) of the Gaussian mechanism, [BW18] Thm 8, computed in log space.

    δ = Φ(Δ/(2σ) − εσ/Δ) − e^ε·Φ(−Δ/(2σ) − εσ/Δ).

    Args:
        sensitivity: Δ > 0, the ℓ₂ sensitivity.
        noise_std: σ > 0, the noise standard deviation (same units as Δ).
        epsilon: ε ≥ 0.

    Returns:
        δ ∈ [0, 1] (0 only when it underflows the float range).

    Raises:
        ValueError: If an argument is out of range (the message names it).

    Example:
        >>> round(analytic_delta(1.0, 1.0, 0.0), 6)  # 2Φ(1/2) − 1
        0.382925
    """
    sensitivity = _check_positive("sensitivity", sensitivity)
    noise_std = _check_positive("noise_std", noise_std)
    epsilon = _check_epsilon(epsilon)
    return math.exp(_log_delta(sensitivity, noise_std, epsilon, upper=False))


def _dp_accounting_quiet(fn: Callable[..., float], *args: float) -> float | None:
    """Call a dp_accounting helper; None if it fails or returns a non-finite/non-positive value."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = float(fn(*args))
    except (ArithmeticError, ValueError, RuntimeError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _bisect_safe(ok: Callable[[float], bool], lo: float, hi: float) -> float:
    """Given ok(lo) False, ok(hi) True, ok monotone: shrink to relative width _RTOL; return hi."""
    while hi - lo > _RTOL * hi:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def analytic_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The smallest σ for which the Gaussian mechanism is (ε, δ)-DP ([BW18] Thm 8), rounded up.

    Args:
        sensitivity: Δ > 0.
        epsilon: ε ≥ 0.
        delta: δ ∈ (0, 1).

    Returns:
        σ with δ(ε, σ) ≤ δ: never below the exact smallest such σ, and above it by the rounding
        margin plus 1e-12 relative (measured ≤ 4e-10 relative for ε ∈ [1e-3, 1e6],
        δ ∈ [1e-12, 0.5]; looser, still safe, at ε ≈ 0 with tiny δ, where Φ(a) − Φ(b) cancels).
        ``math.inf`` if no float σ suffices.

    Raises:
        ValueError: If an argument is out of range (the message names it).
    """
    sensitivity = _check_positive("sensitivity", sensitivity)
    epsilon = _check_epsilon(epsilon)
    delta = _check_delta(delta)
    log_target = math.log(delta)

    def ok(sigma: float) -> bool:
        return _log_delta(sensitivity, sigma, epsilon, upper=True) <= log_target

    seed = _dp_accounting_quiet(gaussian_mechanism.get_sigma_gaussian, epsilon, delta)
    guess = sensitivity * seed if seed is not None else sensitivity
    lo, hi = guess * (1 - 1e-9), guess * (1 + 1e-9)
    step = 1e-9
    while not ok(hi):
        lo, hi = hi, hi * (1 + step)
        step = min(step * 4, 1.0)
        if not math.isfinite(hi):
            return math.inf  # no σ in the float range reaches δ
    step = 1e-9
    while ok(lo):
        lo, hi = lo / (1 + step), lo
        step = min(step * 4, 1.0)
        if lo == 0.0:
            break
    return _bisect_safe(ok, lo, hi)


def analytic_epsilon(sensitivity: float, noise_std: float, delta: float) -> float:
    """The smallest ε at which σ-noise is (ε, δ)-DP ([BW18] Thm 8), rounded up.

    Works for huge ε (e.g. Δ = 40, σ = 0.01 gives ε ≈ 8·10⁶).

    Args:
        sensitivity: Δ > 0.
        noise_std: σ > 0.
        delta: δ ∈ (0, 1).

    Returns:
        ε ≥ 0 with δ(ε, σ) ≤ δ: never below the exact smallest such ε, and above it by at most
        the rounding margin plus 1e-12 relative; 0 when σ already gives (0, δ)-DP.

    Raises:
        ValueError: If an argument is out of range (the message names it).
    """
    sensitivity = _check_positive("sensitivity", sensitivity)
    noise_std = _check_positive("noise_std", noise_std)
    delta = _check_delta(delta)
    log_target = math.log(delta)

    def ok(eps: float) -> bool:
        return _log_delta(sensitivity, noise_std, eps, upper=True) <= log_target

    if ok(0.0):
        return 0.0
    seed = _dp_accounting_quiet(
        gaussian_mechanism.get_epsilon_gaussian, noise_std / sensitivity, delta
    )
    guess = seed if seed is not None else 1.0
    lo, hi = guess * (1 - 1e-9), guess * (1 + 1e-9)
    step = 1e-9
    while not ok(hi):
        lo, hi = hi, hi * (1 + step) + 1e-300
        step = min(step * 4, 1.0)
        if not math.isfinite(hi):
            return math.inf
    step = 1e-9
    while lo > 0 and ok(lo):
        lo, hi = lo / (1 + step), lo
        step = min(step * 4, 1.0)
        if lo < 1e-300:
            lo = 0.0
    return _bisect_safe(ok, lo, hi)


@dataclass(frozen=True)
class ClassicalEpsilon:
    """ε of the classical Gaussian mechanism and whether that mechanism's theorem covers it.

    Attributes:
        epsilon: Δ·√(2 ln(1.25/δ))/σ, rounded up.
        valid: True only when ε < 1 (Dwork & Roth 2014, Thm A.1 assumes ε ∈ (0, 1)).
    """

    epsilon: float
    valid: bool


def _classical_factor(delta: float) -> float:
    return math.sqrt(2.0 * math.log(1.25 / delta))


def classical_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """σ = Δ·√(2 ln(1.25/δ))/ε, the classical Gaussian mechanism (Dwork & Roth 2014, Thm A.1).

    Args:
        sensitivity: Δ > 0.
        epsilon: ε ∈ (0, 1): the theorem does not hold outside.
        delta: δ ∈ (0, 1).

    Returns:
        σ, rounded up by one ulp to absorb rounding.

    Raises:
        ValueError: If ε ∉ (0, 1) or another argument is out of range.

    Example:
        >>> round(classical_sigma(1.0, 0.5, 1e-5), 4)
        9.6896
    """
    sensitivity = _check_positive("sensitivity", sensitivity)
    epsilon = _check_epsilon(epsilon)
    delta = _check_delta(delta)
    if not 0 < epsilon < 1:
        raise ValueError(
            f"epsilon must be in (0, 1) for the classical Gaussian mechanism, got {epsilon!r}; "
            "use analytic_sigma for larger epsilon"
        )
    return math.nextafter(sensitivity * _classical_factor(delta) / epsilon, math.inf)


def classical_epsilon(sensitivity: float, noise_std: float, delta: float) -> ClassicalEpsilon:
    """ε = Δ·√(2 ln(1.25/δ))/σ of the classical Gaussian mechanism, flagged valid only if < 1.

    Args:
        sensitivity: Δ > 0.
        noise_std: σ > 0.
        delta: δ ∈ (0, 1).

    Returns:
        :class:`ClassicalEpsilon`; ``valid`` is False when ε ≥ 1, where the classical theorem
        gives no guarantee (the figure is then only comparable to [Z24]'s reporting).

    Raises:
        ValueError: If an argument is out of range (the message names it).
    """
    sensitivity = _check_positive("sensitivity", sensitivity)
    noise_std = _check_positive("noise_std", noise_std)
    delta = _check_delta(delta)
    eps = math.nextafter(sensitivity * _classical_factor(delta) / noise_std, math.inf)
    return ClassicalEpsilon(epsilon=eps, valid=eps < 1)
