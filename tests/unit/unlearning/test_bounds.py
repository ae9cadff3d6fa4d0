"""The certified sensitivity Δ of METHOD §5 ([Z24] Thm 3.4), term by term on hand examples."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.unlearning.bounds import Constant, Sensitivity, certified_sensitivity


def known(value: float) -> Constant:
    return Constant(value, "declared", "test")


def convex_kwargs(**overrides: object) -> dict[str, object]:
    """C = 1, λ = 1, M = 0.01, L = 1, λ_min = 1, G = 0.1, p = 100 (so λ + λ_min = 2)."""
    kwargs: dict[str, object] = dict(
        radius=1.0,
        damping=1.0,
        lipschitz_hessian=known(0.01),
        hessian_bound=known(1.0),
        lambda_min=known(1.0),
        gradient_bound=known(0.1),
        solver="cg",
        residual_norm=0.02,
        p=100,
    )
    kwargs.update(overrides)
    return kwargs


def test_cg_terms_by_hand() -> None:
    s = certified_sensitivity(**convex_kwargs())  # type: ignore[arg-type]
    # Δ_N = (2·1·(0.01·1 + 1) + 0.1)/2 = 2.12/2 = 1.06; solver = 0.02/2 = 0.01.
    assert s.newton_term == pytest.approx(1.06, rel=1e-15)
    assert s.solver_term == pytest.approx(0.01, rel=1e-15)
    assert s.total == pytest.approx(1.07, rel=1e-15)
    assert not s.bounded_by_radius and s.rho == 0.0
    assert "< 2C" in s.reason
    # Rounded up, never down.
    assert s.newton_term is not None
    assert Fraction(s.newton_term) >= (2 * (Fraction(0.01) + 1) + Fraction(0.1)) / 2


def test_exact_solver_term_uses_residual() -> None:
    s = certified_sensitivity(**convex_kwargs(solver="exact", residual_norm=0.0))  # type: ignore[arg-type]
    assert s.solver_term == 0.0 and s.total == pytest.approx(1.06, rel=1e-15)


def test_lissa_terms_by_hand_and_rho() -> None:
    # p = 1, ρ = 0.25: √(p/ρ) = 2; λ = 0, λ_min = 1000: ε_H = 16·2/1000 + 1/16 = 0.0945.
    # L = 0.1, C = 1, G = 0.5: solver term = 0.0945·(2·0.1·1 + 0.5) = 0.06615.
    # M = 0: Δ_N = (2·1·(0 + 0) + 0.5)/1000 = 0.0005. Δ = 0.06665 < 2C = 2.
    s = certified_sensitivity(
        radius=1.0,
        damping=0.0,
        lipschitz_hessian=known(0.0),
        hessian_bound=known(0.1),
        lambda_min=known(1000.0),
        gradient_bound=known(0.5),
        solver="lissa",
        residual_norm=None,
        p=1,
        rho=0.25,
    )
    assert s.newton_term == pytest.approx(0.0005, rel=1e-15)
    assert s.solver_term == pytest.approx(0.06615, rel=1e-14)
    assert s.total == pytest.approx(0.06665, rel=1e-14)
    assert s.rho == 0.25
    assert "δ + ρ" in s.reason
    assert not s.bounded_by_radius


def test_lissa_at_paper_scale_is_capped_by_radius() -> None:
    # p = 100, ρ = 0.01: √(p/ρ) = 100; λ + λ_min = 2: ε_H = 800.0625; (2LC + G) = 2.1.
    s = certified_sensitivity(**convex_kwargs(solver="lissa", rho=0.01))  # type: ignore[arg-type]
    assert s.solver_term == pytest.approx(800.0625 * 2.1, rel=1e-14)
    assert s.total == 2.0 and s.bounded_by_radius
    # Δ = 2C holds deterministically by projection: no ρ is added to δ.
    assert "≥ 2C" in s.reason and s.rho == 0.0


def test_cg_ignores_rho() -> None:
    s = certified_sensitivity(**convex_kwargs(rho=0.3))  # type: ignore[arg-type]
    assert s.rho == 0.0


def test_unknown_lambda_min_gives_2c_with_reason() -> None:
    s = certified_sensitivity(**convex_kwargs(lambda_min=Constant.unknown()))  # type: ignore[arg-type]
    assert s == Sensitivity(None, None, 2.0, True, s.reason, 0.0)
    assert "λ_min" in s.reason and "unknown" in s.reason and "2C = 2" in s.reason


def test_non_convex_honest_reading() -> None:
    s = certified_sensitivity(**convex_kwargs(damping=0.1, lambda_min=known(-0.5)))  # type: ignore[arg-type]
    assert s.newton_term is None and s.total == 2.0 and s.bounded_by_radius
    assert "≤ 0" in s.reason and "not certified positive definite" in s.reason


def test_unknown_m_only_kills_newton_term() -> None:
    s = certified_sensitivity(**convex_kwargs(lipschitz_hessian=Constant.unknown()))  # type: ignore[arg-type]
    assert s.newton_term is None and s.solver_term == pytest.approx(0.01)
    assert s.total == 2.0 and "M (Lipschitz" in s.reason


def test_unknown_g_and_l() -> None:
    s = certified_sensitivity(**convex_kwargs(gradient_bound=Constant.unknown()))  # type: ignore[arg-type]
    assert s.newton_term is None and "G (bound" in s.reason and s.total == 2.0
    s = certified_sensitivity(
        **convex_kwargs(solver="lissa", rho=0.1, hessian_bound=Constant.unknown())  # type: ignore[arg-type]
    )
    assert s.solver_term is None and "L (bound" in s.reason and s.total == 2.0


def test_missing_residual_for_cg() -> None:
    s = certified_sensitivity(**convex_kwargs(residual_norm=None))  # type: ignore[arg-type]
    assert s.solver_term is None and "residual" in s.reason and s.total == 2.0


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"radius": 0.0}, "radius"),
        ({"damping": -0.1}, "damping"),
        ({"p": 0}, "p"),
        ({"solver": "sgd"}, "solver"),
        ({"solver": "lissa", "rho": 0.0}, "rho"),
        ({"residual_norm": -1.0}, "residual_norm"),
        ({"lipschitz_hessian": known(-1.0)}, "lipschitz_hessian"),
        ({"gradient_bound": known(-1.0)}, "gradient_bound"),
    ],
)
def test_validation(overrides: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        certified_sensitivity(**convex_kwargs(**overrides))  # type: ignore[arg-type]


def test_constant_validation() -> None:
    with pytest.raises(ValueError, match="provenance"):
        Constant(1.0, "guessed", "")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown"):
        Constant(None, "declared", "")
    with pytest.raises(ValueError, match="unknown"):
        Constant(1.0, "unknown", "")
    with pytest.raises(ValueError, match="finite"):
        Constant(math.inf, "estimated", "")
    assert not Constant.unknown().known and known(1.0).known


finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(c=finite, lam=finite, m=finite, lmin=finite, g=finite, r=finite)
def test_terms_never_rounded_down(
    c: float, lam: float, m: float, lmin: float, g: float, r: float
) -> None:
    s = certified_sensitivity(
        **convex_kwargs(  # type: ignore[arg-type]
            radius=c,
            damping=lam,
            lipschitz_hessian=known(m),
            lambda_min=known(lmin),
            gradient_bound=known(g),
            residual_norm=r,
        )
    )
    d = Fraction(lam) + Fraction(lmin)
    newton = (2 * Fraction(c) * (Fraction(m) * Fraction(c) + Fraction(lam)) + Fraction(g)) / d
    solver = Fraction(r) / d
    assert s.newton_term is not None and s.solver_term is not None
    assert Fraction(s.newton_term) >= newton
    assert Fraction(s.solver_term) >= solver
    assert Fraction(s.total) >= min(2 * Fraction(c), newton + solver)
    assert s.total <= 2 * c
    # ...and tight: at most one ulp above.
    assert math.nextafter(s.newton_term, 0.0) < newton
