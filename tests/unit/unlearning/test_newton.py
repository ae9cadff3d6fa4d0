"""The projected Newton step (METHOD §3 steps 2-4): projection, update, and one-step convergence on
a strictly convex quadratic, where one exact Newton step must land on the minimiser."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from app.unlearning.architectures import build_model
from app.unlearning.hvp import RetainSetCurvature
from app.unlearning.newton import NewtonStepResult, newton_update, project_to_ball, unlearn_step
from app.unlearning.objective import Objective


class QuadraticObjective(Objective):
    """Ridge regression: L(w) = mean ½(xᵢ·w − yᵢ)² + (wd/2)‖w‖², strictly convex for wd > 0."""

    def criterion(self, logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        sq = 0.5 * (logits.squeeze(-1) - y) ** 2
        return sq.sum() if reduction == "sum" else sq.mean()


def _ridge_problem(n: int = 200, d: int = 30, wd: float = 1e-2):
    gen = torch.Generator().manual_seed(5)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=gen, dtype=torch.float64))
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(d, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(
        n, generator=gen, dtype=torch.float64
    )
    obj = QuadraticObjective(model, wd)
    w_star = torch.linalg.solve(x.T @ x / n + wd * torch.eye(d, dtype=torch.float64), x.T @ y / n)
    return obj, x, y, w_star


def test_projection_inside_ball_is_identity() -> None:
    w = torch.tensor([0.3, 0.4], dtype=torch.float64)
    out = project_to_ball(w, 1.0)
    assert torch.equal(out, w) and out is not w
    assert torch.equal(project_to_ball(w, math.inf), w)


def test_projection_outside_ball_scales_onto_sphere() -> None:
    gen = torch.Generator().manual_seed(0)
    w = 10 * torch.randn(1000, generator=gen, dtype=torch.float64)
    out = project_to_ball(w, 2.5)
    assert float(out.norm()) == pytest.approx(2.5, rel=1e-12)
    assert float(torch.dot(out, w) / (out.norm() * w.norm())) == pytest.approx(1.0, rel=1e-12)
    # Non-expansive toward any point of the ball: distance to a point inside never grows.
    inside = project_to_ball(torch.randn(1000, generator=gen, dtype=torch.float64), 2.5)
    assert float((out - inside).norm()) <= float((w - inside).norm())


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan")])
def test_projection_rejects_bad_radius(radius: float) -> None:
    with pytest.raises(ValueError, match="radius"):
        project_to_ball(torch.ones(3), radius)


def test_newton_update_subtracts_then_projects() -> None:
    w = torch.tensor([3.0, 0.0], dtype=torch.float64)
    v = torch.tensor([-1.0, 3.0], dtype=torch.float64)
    expected = torch.tensor([4.0, -3.0], dtype=torch.float64)
    assert torch.allclose(newton_update(w, v, 100.0), expected)
    assert torch.allclose(newton_update(w, v, 1.0), torch.tensor([0.8, -0.6], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        newton_update(w, v[:1], 1.0)


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_one_newton_step_lands_on_quadratic_minimiser(solver: str) -> None:
    obj, x, y, w_star = _ridge_problem()
    w0 = obj.initial_params()
    options = {"rtol": 1e-12, "max_iter": 100} if solver == "cg" else {}
    res = unlearn_step(
        obj,
        w0,
        x,
        y,
        damping=0.0,
        radius=math.inf,
        solver=solver,
        solver_options=options,
        chunk_size=64,
    )
    assert isinstance(res, NewtonStepResult)
    assert torch.allclose(res.params_new, w_star, rtol=1e-9, atol=1e-11)
    assert res.step_norm == pytest.approx(float((w_star - w0).norm()), rel=1e-9)
    assert res.gradient_norm > 0
    assert set(res.elapsed_s) == {"gradient", "solve", "update"}
    assert all(t >= 0 for t in res.elapsed_s.values())


def test_unlearn_step_projects_onto_the_ball() -> None:
    obj, x, y, w_star = _ridge_problem()
    radius = 0.5 * float(w_star.norm())
    res = unlearn_step(obj, obj.initial_params(), x, y, damping=0.0, radius=radius, solver="exact")
    assert float(res.params_new.norm()) == pytest.approx(radius, rel=1e-12)


def test_unlearn_step_with_lissa_reduces_retain_gradient() -> None:
    """Forget 20 of 200 samples from a trained-ish logistic regression; the step moves toward the
    retain-set optimum (the retain gradient norm drops)."""
    gen = torch.Generator().manual_seed(11)
    model = build_model("logreg", 10, 3, seed=1).double()
    x = torch.randn(200, 10, generator=gen, dtype=torch.float64)
    y = (x @ torch.randn(10, 3, generator=gen, dtype=torch.float64)).argmax(1)
    obj = Objective(model, 1e-2)
    w0 = obj.initial_params()
    x_r, y_r = x[20:], y[20:]
    res = unlearn_step(
        obj,
        w0,
        x_r,
        y_r,
        damping=0.01,
        radius=20.0,
        solver="lissa",
        solver_options={"depth": 200, "repeats": 4, "batch_size": 50, "scale": None},
        generator=torch.Generator().manual_seed(0),
    )
    assert res.ihvp.solver == "lissa"
    assert res.ihvp.diagnostics["scale_provenance"] == "estimated"
    curv = RetainSetCurvature(obj, x_r, y_r)
    assert float(curv.gradient(res.params_new).norm()) < 0.5 * res.gradient_norm


def test_unlearn_step_validates() -> None:
    obj, x, y, _ = _ridge_problem()
    w0 = obj.initial_params()
    with pytest.raises(ValueError, match="damping"):
        unlearn_step(obj, w0, x, y, damping=-1.0, radius=1.0, solver="exact")
    with pytest.raises(ValueError, match="radius"):
        unlearn_step(obj, w0, x, y, damping=0.0, radius=0.0, solver="exact")
    with pytest.raises(ValueError, match="unknown solver"):
        unlearn_step(obj, w0, x, y, damping=0.0, radius=1.0, solver="sgd")
