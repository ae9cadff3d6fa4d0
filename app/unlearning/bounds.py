"""The certified sensitivity Δ of one unlearning step ([Z24] Thm 3.4, §4; METHOD §5).

Δ bounds ‖w̃ − w̃*‖₂, the distance between the unlearned estimate and the model retrained from
scratch on D_r. It is the sum of two terms, capped by the diameter of the training ball:

- Newton term ([Z24] Thm 3.4):  Δ_N = (2C·(M·C + λ) + G) / (λ + λ_min), only when λ + λ_min > 0;
- solver term, ``lissa`` ([Z24] §4):  ε_H·(2·L·C + G) with ε_H = 16·√(p/ρ)/(λ + λ_min) + 1/16,
  holding with probability 1 − ρ (the release is then (ε, δ + ρ)-certified);
- solver term, ``cg``/``exact``:  ‖r‖/(λ + λ_min) with r = g − (H + λI)·v the recorded residual;
- Δ = min(2C, Δ_N + solver term): the projected estimate and the retrained model both lie in the
  C-ball, so 2C always holds.

Whenever a term cannot be bounded (a constant is unknown, or λ + λ_min ≤ 0) the certificate falls
back to Δ = 2C and :attr:`Sensitivity.reason` says why in plain words. For a non-convex network
λ_min ≤ 0 ≤ M·C, so Δ_N ≥ 2C and Δ = 2C: the Newton step then improves utility, not the bound
(METHOD §5, "honest reading").

Every number is computed in exact rational arithmetic from the float inputs and rounded *up* to
the next float, so no term is ever understated by rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = ["PROVENANCES", "Constant", "Provenance", "Sensitivity", "certified_sensitivity"]

Provenance = Literal["declared", "derived", "estimated", "unknown"]
PROVENANCES: tuple[str, ...] = ("declared", "derived", "estimated", "unknown")
_SOLVERS: tuple[str, ...] = ("lissa", "cg", "exact")


@dataclass(frozen=True)
class Constant:
    """A constant of METHOD §5 (M, L, λ_min or G) with its provenance.

    Attributes:
        value: The number, or None when unknown.
        provenance: ``"declared"`` (by the model owner), ``"derived"`` (computed from other
            constants), ``"estimated"`` (measured, see ``method``) or ``"unknown"``.
        method: How the value was obtained (e.g. ``"Lanczos, 50 steps, margin 0.1"``), or why it
            is unknown.
        iterations: For an estimate, the Hessian-vector products (or iterations) it used.
        residual: For an estimate, its residual (e.g. ‖Hu − θu‖ of a Ritz pair), the safety
            margin already subtracted from a λ_min lower bound.

    Raises:
        ValueError: If ``provenance`` is not one of the four, or ``value`` is None exactly when
            ``provenance`` is not ``"unknown"``, or ``value`` is not finite.
    """

    value: float | None
    provenance: Provenance
    method: str = ""
    iterations: int | None = None
    residual: float | None = None

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(f"provenance must be one of {PROVENANCES}, got {self.provenance!r}")
        if (self.value is None) != (self.provenance == "unknown"):
            raise ValueError(
                "a Constant has value None exactly when its provenance is 'unknown' "
                f"(got value={self.value!r}, provenance={self.provenance!r})"
            )
        if self.value is not None:
            if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
                raise ValueError(f"value must be a real number, got {self.value!r}")
            if not math.isfinite(self.value):
                raise ValueError(f"value must be finite, got {self.value!r}")

    @classmethod
    def unknown(cls, method: str = "not provided") -> Constant:
        """A constant nobody declared or estimated."""
        return cls(value=None, provenance="unknown", method=method)

    @property
    def known(self) -> bool:
        """Whether a value is available."""
        return self.value is not None


@dataclass(frozen=True)
class Sensitivity:
    """The certified Δ and its parts ([Z24] Thm 3.4; METHOD §5).

    Attributes:
        newton_term: Δ_N, rounded up; None when unbounded (see ``reason``).
        solver_term: The solver's error term, rounded up; None when unbounded.
        total: Δ = min(2C, Δ_N + solver term), rounded up; 2C when a term is unbounded.
        bounded_by_radius: True when Δ = 2C (the projection bound is the binding one).
        reason: Plain-words account of which bound applies and why.
        rho: Failure probability ρ of the solver term (LiSSA); 0 for ``cg``/``exact``. The
            release must be certified at δ + ρ.
    """

    newton_term: float | None
    solver_term: float | None
    total: float
    bounded_by_radius: bool
    reason: str
    rho: float


def _round_up(q: Fraction) -> float:
    """The smallest float ≥ q (``math.inf`` beyond the float range)."""
    try:
        f = float(q)
    except OverflowError:
        return math.inf
    if Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f


def _sqrt_up(q: Fraction) -> Fraction:
    """A rational upper bound of √q, tight to about 2⁻⁶⁰ relative (exact integer arithmetic)."""
    if q < 0:
        raise ValueError("square root of a negative number")
    scale = 1 << 64
    num, den = q.numerator, q.denominator
    # √(num/den) = √(num·den)/den ≤ (isqrt(num·den·scale²) + 1)/(den·scale)
    return Fraction(math.isqrt(num * den * scale * scale) + 1, den * scale)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _require_nonneg(name: str, c: Constant) -> None:
    if not isinstance(c, Constant):
        raise ValueError(f"{name} must be a Constant, got {type(c).__name__}")
    if c.value is not None and c.value < 0:
        raise ValueError(f"{name} must be >= 0, got {c.value!r}")


def certified_sensitivity(
    *,
    radius: float,
    damping: float,
    lipschitz_hessian: Constant,
    hessian_bound: Constant,
    lambda_min: Constant,
    gradient_bound: Constant,
    solver: str,
    residual_norm: float | None,
    p: int,
    rho: float = 0.0,
) -> Sensitivity:
    """Compute the certified sensitivity Δ of one step ([Z24] Thm 3.4, §4; METHOD §5).

    Args:
        radius: C > 0, the training ball radius.
        damping: λ ≥ 0.
        lipschitz_hessian: M ≥ 0, Lipschitz constant of the Hessian.
        hessian_bound: L ≥ 0, a bound on ‖H‖ (used by the LiSSA term).
        lambda_min: A lower bound on the smallest eigenvalue of H (may be negative).
        gradient_bound: G ≥ 0, a bound on the retrained model's retain-set gradient norm.
        solver: ``"lissa"``, ``"cg"`` or ``"exact"``.
        residual_norm: ‖g − (H + λI)v‖ for ``cg``/``exact`` (None if not recorded); ignored for
            ``lissa``.
        p: Number of parameters (≥ 1).
        rho: LiSSA failure probability ρ ∈ (0, 1); ignored (reported as 0) for ``cg``/``exact``.

    Returns:
        A :class:`Sensitivity`; every value rounded up.

    Raises:
        ValueError: On an unknown solver or out-of-range inputs (the message names the argument).

    Example:
        >>> known = lambda v: Constant(v, "declared", "test")
        >>> s = certified_sensitivity(radius=1.0, damping=1.0, lipschitz_hessian=known(0.0),
        ...     hessian_bound=known(1.0), lambda_min=known(1.0), gradient_bound=known(0.0),
        ...     solver="exact", residual_norm=0.0, p=10)
        >>> (s.newton_term, s.solver_term, s.total)  # (2·1·(0 + 1) + 0)/2 = 1
        (1.0, 0.0, 1.0)
    """
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be finite and > 0, got {radius!r}")
    if not (math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be finite and >= 0, got {damping!r}")
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"p must be an integer >= 1, got {p!r}")
    _require_nonneg("lipschitz_hessian", lipschitz_hessian)
    _require_nonneg("hessian_bound", hessian_bound)
    _require_nonneg("gradient_bound", gradient_bound)
    if not isinstance(lambda_min, Constant):
        raise ValueError(f"lambda_min must be a Constant, got {type(lambda_min).__name__}")
    if solver == "lissa":
        if not (0 < rho < 1):
            raise ValueError(f"rho must be in (0, 1) for the lissa solver, got {rho!r}")
    else:
        rho = 0.0
        if residual_norm is not None and not (math.isfinite(residual_norm) and residual_norm >= 0):
            raise ValueError(f"residual_norm must be finite and >= 0, got {residual_norm!r}")

    c = Fraction(radius)
    lam = Fraction(damping)
    two_c = 2 * c
    problems: list[str] = []

    # The common denominator λ + λ_min.
    denom: Fraction | None = None
    if lambda_min.value is None:
        problems.append(
            "λ_min (a lower bound on the smallest eigenvalue of H) is unknown, so λ + λ_min > 0 "
            "cannot be shown"
        )
    else:
        d = lam + Fraction(lambda_min.value)
        if d <= 0:
            problems.append(
                f"λ + λ_min = {_fmt(damping)} + ({_fmt(lambda_min.value)}) = {_fmt(float(d))} "
                "≤ 0: the damped Hessian H + λI is not certified positive definite (raise λ "
                "above −λ_min)"
            )
        else:
            denom = d

    g_val = None if gradient_bound.value is None else Fraction(gradient_bound.value)
    if g_val is None:
        problems.append("G (bound on the retrained model's retain-set gradient norm) is unknown")

    # Newton term Δ_N = (2C(MC + λ) + G)/(λ + λ_min).
    newton_exact: Fraction | None = None
    newton_problems: list[str] = []
    if lipschitz_hessian.value is None:
        newton_problems.append("M (Lipschitz constant of the Hessian) is unknown")
    if denom is not None and g_val is not None and not newton_problems:
        m = Fraction(lipschitz_hessian.value)  # type: ignore[arg-type]
        newton_exact = (2 * c * (m * c + lam) + g_val) / denom

    # Solver term.
    solver_exact: Fraction | None = None
    solver_problems: list[str] = []
    if solver == "lissa":
        if hessian_bound.value is None:
            solver_problems.append("L (bound on ‖H‖) is unknown, so the LiSSA error is unbounded")
        if denom is not None and g_val is not None and not solver_problems:
            eps_h = 16 * _sqrt_up(Fraction(p) / Fraction(rho)) / denom + Fraction(1, 16)
            solver_exact = eps_h * (2 * Fraction(hessian_bound.value) * c + g_val)  # type: ignore[arg-type]
    else:
        if residual_norm is None:
            solver_problems.append(f"the {solver} solver's residual norm was not recorded")
        if denom is not None and not solver_problems:
            solver_exact = Fraction(residual_norm) / denom  # type: ignore[arg-type]

    newton_term = None if newton_exact is None else _round_up(newton_exact)
    solver_term = None if solver_exact is None else _round_up(solver_exact)
    cap = float(two_c)  # exact: doubling a float
    lissa_note = (
        f" The LiSSA term holds with probability 1 − ρ = {_fmt(1 - rho)}: certify δ + ρ "
        f"(ρ = {_fmt(rho)})."
        if solver == "lissa"
        else ""
    )

    if newton_exact is None or solver_exact is None:
        all_problems = problems + newton_problems + solver_problems
        which = []
        if newton_exact is None:
            which.append("the Newton term of [Z24] Thm 3.4")
        if solver_exact is None:
            which.append(f"the {solver} solver term")
        reason = (
            "; ".join(all_problems)
            + ". Hence "
            + " and ".join(which)
            + f" {'is' if len(which) == 1 else 'are'} unbounded, and Δ = 2C = {_fmt(cap)} by "
            "projection alone (the estimate and the retrained model both lie in the C-ball), "
            "which holds deterministically: no solver failure probability ρ is added to δ."
        )
        return Sensitivity(newton_term, solver_term, cap, True, reason, 0.0)

    total_exact = newton_exact + solver_exact
    if total_exact >= two_c:
        reason = (
            f"Δ_N + solver term = {_fmt(_round_up(total_exact))} ≥ 2C = {_fmt(cap)}: the "
            "projection bound is smaller, so Δ = 2C (the Newton step improves closeness to "
            "retraining, not the formal bound). The projection bound holds deterministically: "
            "no solver failure probability ρ is added to δ."
        )
        return Sensitivity(newton_term, solver_term, cap, True, reason, 0.0)
    total = min(cap, _round_up(total_exact))
    reason = (
        f"Δ = Δ_N + solver term = {_fmt(total)} < 2C = {_fmt(cap)} ([Z24] Thm 3.4)." + lissa_note
    )
    return Sensitivity(newton_term, solver_term, total, total >= cap, reason, float(rho))
