"""λ_min by Lanczos and ‖H‖ by power iteration against a dense float64 Hessian (METHOD §5);
the closed-form MLP products against autograd; the reference LiSSA against the product's."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from app.unlearning.architectures import build_model
from app.unlearning.bounds import Constant
from app.unlearning.hvp import RetainSetCurvature
from app.unlearning.objective import Objective
from app.unlearning.reference import lissa_draws, reference_lissa
from app.unlearning.solvers import solve_lissa
from app.unlearning.spectrum import auto_damping, lanczos_lambda_min, power_norm


def _case(closed_form: bool = True, dtype: torch.dtype = torch.float64) -> tuple[
        RetainSetCurvature, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    model = build_model("mlp", 12, 4, hidden=(8, 6), seed=1).to(dtype)
    objective = Objective(model, weight_decay=1e-3)
    x = torch.randn(150, 12, generator=gen, dtype=dtype)
    y = torch.randint(4, (150,), generator=gen)
    return RetainSetCurvature(objective, x, y, chunk_size=64,
                              closed_form=closed_form), objective.initial_params()


def _dense(cur: RetainSetCurvature, w: torch.Tensor) -> np.ndarray:
    eye = torch.eye(cur.num_params, dtype=w.dtype)
    h = cur.hvp_batch(w, eye).numpy()
    return 0.5 * (h + h.T)


def test_lanczos_full_depth_matches_dense_lambda_min() -> None:
    cur, w = _case()
    eig = np.linalg.eigvalsh(_dense(cur, w))
    assert eig[0] < 0  # the random-init MLP is non-convex: the interesting case
    est = lanczos_lambda_min(cur, w, steps=cur.num_params, margin=0.0)
    assert est.ritz_value == pytest.approx(eig[0], abs=1e-8)
    assert est.residual < 1e-6
    assert est.lower_bound <= eig[0] + 1e-9
    assert est.iterations <= cur.num_params + 1
    assert "Lanczos" in est.method


def test_lanczos_short_run_brackets_an_eigenvalue_and_subtracts_margin() -> None:
    cur, w = _case()
    eig = np.linalg.eigvalsh(_dense(cur, w))
    est = lanczos_lambda_min(cur, w, steps=15, margin=0.05)
    # A Ritz value never undershoots λ_min; some eigenvalue lies within the residual.
    assert est.ritz_value >= eig[0] - 1e-9
    assert np.min(np.abs(eig - est.ritz_value)) <= est.residual + 1e-9
    assert est.lower_bound == pytest.approx(est.ritz_value - est.residual - 0.05)
    assert est.iterations == 16


def test_eigsh_variant_finds_lambda_min() -> None:
    cur, w = _case()
    eig = np.linalg.eigvalsh(_dense(cur, w))
    est = lanczos_lambda_min(cur, w, steps=60, method="eigsh", tol=1e-10)
    assert est.ritz_value == pytest.approx(eig[0], abs=1e-6)


def test_power_norm_bounds_the_spectral_norm() -> None:
    cur, w = _case()
    eig = np.linalg.eigvalsh(_dense(cur, w))
    top = float(np.max(np.abs(eig)))
    est = power_norm(cur, w, iterations=300, safety_factor=1.1)
    assert est.estimate == pytest.approx(top, rel=1e-3)
    assert est.bound >= top
    assert est.iterations == 300


def test_auto_damping_and_settings() -> None:
    assert auto_damping(0.01, -0.087, 0.01) == pytest.approx(0.097)
    assert auto_damping(0.5, -0.087, 0.01) == 0.5
    cur, w = _case()
    with pytest.raises(ValueError):
        lanczos_lambda_min(cur, w, margin=-1.0)
    with pytest.raises(ValueError):
        power_norm(cur, w, iterations=0)


def test_constant_records_iterations_and_residual() -> None:
    c = Constant(-0.1, "estimated", "Lanczos", iterations=41, residual=1e-3)
    assert (c.iterations, c.residual) == (41, 1e-3)
    assert Constant(1.0, "declared").iterations is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_closed_form_products_equal_double_backward(dtype: torch.dtype) -> None:
    fast, w = _case(True, dtype)
    slow, _ = _case(False, dtype)
    assert fast.closed_form and not slow.closed_form
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    vs = torch.randn(3, w.numel(), generator=torch.Generator().manual_seed(2), dtype=dtype)
    a, b = fast.hvp_batch(w, vs), slow.hvp_batch(w, vs)
    assert float((a - b).norm() / b.norm()) < tol
    idx = torch.randint(150, (3, 7), generator=torch.Generator().manual_seed(3))
    a, b = fast.minibatch_hvp(w, vs, idx), slow.minibatch_hvp(w, vs, idx)
    assert float((a - b).norm() / b.norm()) < tol


def test_closed_form_not_used_for_other_models() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    cur = RetainSetCurvature(Objective(model, 0.0), torch.randn(5, 3), torch.randint(2, (5,)))
    assert not cur.closed_form


def test_reference_lissa_equals_product_on_same_minibatches() -> None:
    cur, w = _case(dtype=torch.float32)
    g = cur.gradient(w)
    depth, scale, damping = 30, 50.0, 0.5
    prod = solve_lissa(cur, w, g, damping, depth=depth, repeats=4, batch_size=5, scale=scale,
                       generator=torch.Generator().manual_seed(9), compute_residual=False)
    idx = lissa_draws(cur.n, depth, 4, 5, torch.Generator().manual_seed(9))
    ref = reference_lissa(cur.objective, w, g, cur.x, cur.y, damping, scale, idx)
    assert float((prod.v - ref).norm() / ref.norm()) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_closed_form_gradient_and_lissa_step_equal_autograd(dtype: torch.dtype) -> None:
    fast, w = _case(True, dtype)
    slow, _ = _case(False, dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    a, b = fast.gradient(w), slow.gradient(w)
    assert float((a - b).norm() / b.norm()) < tol
    vs = torch.randn(3, w.numel(), generator=torch.Generator().manual_seed(4), dtype=dtype)
    g = fast.gradient(w)
    idx = torch.randint(150, (3, 7), generator=torch.Generator().manual_seed(5))
    v1, v2 = vs.clone(), vs.clone()
    fast.lissa_step_(w, v1, g, idx, 0.1, 20.0)
    slow.lissa_step_(w, v2, g, idx, 0.1, 20.0)
    expected = vs * (1 - 0.1 / 20.0) + g - slow.minibatch_hvp(w, vs, idx) / 20.0
    assert float((v1 - expected).norm() / expected.norm()) < tol
    assert float((v2 - expected).norm() / expected.norm()) < tol


def test_minibatch_power_norm_is_the_largest_sampled_minibatch_norm() -> None:
    from app.unlearning.spectrum import minibatch_power_norm

    cur, w = _case()
    est = minibatch_power_norm(cur, w, 5, batches=4, iterations=300, safety_factor=1.2, seed=3)
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(cur.n, (4, 5), generator=gen)
    eye = torch.eye(cur.num_params, dtype=w.dtype)
    norms = []
    for j in range(4):
        rows = idx[j].unsqueeze(0).expand(cur.num_params, -1)
        h = cur.minibatch_hvp(w, eye, rows).numpy()
        norms.append(float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (h + h.T))))))
    assert est.estimate == pytest.approx(max(norms), rel=1e-3)
    assert est.bound == pytest.approx(1.2 * est.estimate)
