"""Extreme eigenvalues of the retain-set Hessian: λ_min by Lanczos, ‖H‖ by power iteration.

METHOD §5 needs λ_min (a lower bound on the smallest eigenvalue of H = ∇²L(w; D_r), negative for a
non-convex network) and L (a bound on ‖H‖); METHOD §4 needs S ≥ ‖H + λI‖ for LiSSA. Both are
*estimated* here from full-retain-set Hessian-vector products (H is never formed):

- :func:`lanczos_lambda_min`: implicitly restarted Lanczos (ARPACK through
  :func:`scipy.sparse.linalg.eigsh`, ``which="SA"``) over a :class:`~scipy.sparse.linalg.LinearOperator`
  of products. For the returned Ritz pair (θ, u), ‖u‖ = 1, the residual ρ = ‖Hu − θu‖ is
  recomputed with one more product; H symmetric has an eigenvalue in [θ − ρ, θ + ρ]
  (Parlett, The Symmetric Eigenvalue Problem, Thm 4.5.1), so ``lower_bound = θ − ρ − margin`` is
  the value to certify with. Lanczos approaches λ_min from above; the residual is the safety
  margin against that, not a proof that no smaller eigenvalue exists.
- :func:`power_norm`: power iteration; ‖Hv‖ for unit v is a lower bound of ‖H‖, the estimate is
  multiplied by a safety factor (Golub & Van Loan, Matrix Computations, §8.2).

Results are frozen dataclasses recording iterations (products) and residuals, so the certificate
can state how each constant was estimated.

Sources: [Z24] §4 (the constants); Lanczos 1950; Lehoucq, Sorensen, Yang, ARPACK Users' Guide 1998.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from app.unlearning.hvp import RetainSetCurvature
from app.unlearning.solvers import SolverDivergedError

__all__ = [
    "NormEstimate",
    "SmallestEigenvalue",
    "auto_damping",
    "lanczos_lambda_min",
    "minibatch_power_norm",
    "power_norm",
]


@dataclass(frozen=True)
class SmallestEigenvalue:
    """A Lanczos estimate of λ_min(H).

    Attributes:
        ritz_value: θ, the smallest Ritz value found.
        residual: ρ = ‖Hu − θu‖₂ for the unit Ritz vector u (recomputed with one product).
        margin: An extra safety margin subtracted on top of ρ.
        lower_bound: θ − ρ − margin, the value recorded as λ_min.
        iterations: Hessian-vector products used (including the residual check).
        converged: Whether ARPACK met its tolerance within its iteration cap.
        method: Plain-words description for the certificate.
    """

    ritz_value: float
    residual: float
    margin: float
    lower_bound: float
    iterations: int
    converged: bool
    method: str


@dataclass(frozen=True)
class NormEstimate:
    """A power-iteration estimate of ‖H‖₂ (largest |eigenvalue|).

    Attributes:
        estimate: The raw estimate max(|vᵀHv|, ‖Hv‖) at the last unit iterate v.
        bound: ``safety_factor`` × estimate, the value recorded as L.
        residual: ‖Hv − θv‖₂ at the last iterate (θ = vᵀHv).
        iterations: Products used.
        method: Plain-words description for the certificate.
    """

    estimate: float
    bound: float
    residual: float
    iterations: int
    method: str


class _Counter:
    def __init__(self) -> None:
        self.count = 0


def _operator(
    curvature: RetainSetCurvature, w: torch.Tensor, counter: _Counter
) -> LinearOperator:
    p = curvature.num_params

    def matvec(v: np.ndarray) -> np.ndarray:
        counter.count += 1
        # scipy works in host float64; the product runs on w's device and dtype (a GPU worker).
        vt = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        hv = curvature.hvp(w, vt.to(device=w.device, dtype=w.dtype))
        out = hv.to(device="cpu", dtype=torch.float64).numpy()
        if not np.isfinite(out).all():
            raise SolverDivergedError("a Hessian-vector product is NaN/Inf during Lanczos")
        return out

    return LinearOperator((p, p), matvec=matvec, dtype=np.float64)  # type: ignore[call-arg]


def lanczos_lambda_min(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    *,
    steps: int = 60,
    margin: float = 0.0,
    seed: int = 0,
    method: str = "lanczos",
    tol: float = 1e-3,
) -> SmallestEigenvalue:
    """Estimate λ_min(H) at ``w`` by Lanczos; ``lower_bound`` = θ − ‖Hu − θu‖ − margin.

    ``method="lanczos"`` (default): ``steps`` Lanczos steps with full reorthogonalisation (a fixed
    budget of products), the tridiagonal solved by :func:`scipy.linalg.eigh_tridiagonal`.
    ``method="eigsh"``: implicitly restarted Lanczos (ARPACK, ``which="SA"``, ``ncv=steps``) to
    ``tol``; on this problem the smallest eigenvalues sit close together near zero, far from the
    largest ones, so ARPACK often needs many restarts (hundreds of full products), hence the
    fixed-budget default. Either way the residual of the returned Ritz pair is recomputed with one
    more product and subtracted.

    Args:
        curvature: Full-retain-set products (mean scale, weight decay included).
        w: ``Tensor [p]`` the point.
        steps: Lanczos steps (products), or ARPACK's ``ncv``.
        margin: Extra margin (≥ 0) subtracted below θ − ρ.
        seed: Seed of the starting vector.
        method: ``"lanczos"`` or ``"eigsh"``.
        tol: ARPACK tolerance (``"eigsh"`` only).

    Returns:
        A :class:`SmallestEigenvalue`.

    Raises:
        SolverDivergedError: If a product is NaN/Inf, or ARPACK returns nothing.
        ValueError: On bad settings.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be finite and >= 0, got {margin!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method not in ("lanczos", "eigsh"):
        raise ValueError(f"method must be 'lanczos' or 'eigsh', got {method!r}")
    p = curvature.num_params
    w = w.detach()
    counter = _Counter()
    op = _operator(curvature, w, counter)
    v0 = np.random.default_rng(seed).standard_normal(p)
    converged = True
    if method == "eigsh" and p > 2:
        try:
            vals, vecs = eigsh(op, k=1, which="SA", ncv=max(2, min(steps, p - 1)), tol=tol, v0=v0)
            theta, u = float(vals[0]), vecs[:, 0]
        except ArpackNoConvergence as err:
            converged = False
            if len(err.eigenvalues) == 0:
                raise SolverDivergedError(
                    "ARPACK found no Ritz value for λ_min within its iteration cap"
                ) from err
            theta, u = float(err.eigenvalues[0]), err.eigenvectors[:, 0]
        label = f"Lanczos (scipy eigsh, which=SA, ncv={steps}, tol={tol:g})"
    else:
        k = min(steps, p)
        basis = np.zeros((k, p))
        alphas: list[float] = []
        betas: list[float] = []
        q = v0 / np.linalg.norm(v0)
        for j in range(k):
            basis[j] = q
            r = op.matvec(q)
            alpha = float(q @ r)
            alphas.append(alpha)
            r = r - basis[: j + 1].T @ (basis[: j + 1] @ r)  # full reorthogonalisation, twice
            r = r - basis[: j + 1].T @ (basis[: j + 1] @ r)
            beta = float(np.linalg.norm(r))
            if j == k - 1 or beta <= 1e-12 * max(1.0, abs(alpha)):
                break
            betas.append(beta)
            q = r / beta
        m = len(alphas)
        vals, vecs = eigh_tridiagonal(np.array(alphas), np.array(betas[: m - 1]))
        theta = float(vals[0])
        u = basis[:m].T @ vecs[:, 0]
        label = f"Lanczos ({m} steps, full reorthogonalisation)"
    u = u / np.linalg.norm(u)
    hu = op.matvec(u)
    theta = float(u @ hu)  # the Rayleigh quotient of the normalised vector, consistent with ρ
    residual = float(np.linalg.norm(hu - theta * u))
    lower = theta - residual - margin
    text = (
        f"{label} on full retain-set HVPs, {counter.count} products; λ_min ≥ θ − ‖Hu − θu‖ − "
        f"margin = {theta:.6g} − {residual:.3g} − {margin:g}"
        f"{'' if converged else '; ARPACK did not converge'}"
    )
    return SmallestEigenvalue(
        ritz_value=theta,
        residual=residual,
        margin=float(margin),
        lower_bound=lower,
        iterations=counter.count,
        converged=converged,
        method=text,
    )


def power_norm(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    *,
    iterations: int = 30,
    safety_factor: float = 1.1,
    seed: int = 0,
) -> NormEstimate:
    """Estimate ‖H‖₂ at ``w`` by power iteration on full-retain-set products.

    Args:
        curvature: Full-retain-set products.
        w: ``Tensor [p]`` the point.
        iterations: Products (≥ 1).
        safety_factor: Multiplier (≥ 1) applied to the estimate.
        seed: Seed of the start vector.

    Returns:
        A :class:`NormEstimate`.

    Raises:
        SolverDivergedError: On NaN/Inf, or if H = 0.
        ValueError: On bad settings.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if safety_factor < 1:
        raise ValueError(f"safety_factor must be >= 1, got {safety_factor}")
    w = w.detach()
    gen = torch.Generator(device=w.device).manual_seed(seed)
    v = torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device)
    v = v / torch.linalg.vector_norm(v)
    estimate = 0.0
    residual = math.inf
    done = 0
    for _ in range(iterations):
        hv = curvature.hvp(w, v)
        done += 1
        v64, hv64 = v.to(torch.float64), hv.to(torch.float64)
        theta = float(torch.dot(v64, hv64))
        norm = float(torch.linalg.vector_norm(hv64))
        if not math.isfinite(norm):
            raise SolverDivergedError("power iteration met NaN/Inf")
        residual = float(torch.linalg.vector_norm(hv64 - theta * v64))
        estimate = max(abs(theta), norm)
        if norm == 0.0:
            break
        v = hv / norm
    if estimate == 0.0:
        raise SolverDivergedError("power iteration found H = 0")
    method = (
        f"power iteration on full retain-set HVPs, {done} products, ×{safety_factor:g} safety "
        f"factor (last residual {residual:.3g})"
    )
    return NormEstimate(
        estimate=estimate,
        bound=safety_factor * estimate,
        residual=residual,
        iterations=done,
        method=method,
    )


def minibatch_power_norm(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    batch_size: int,
    *,
    batches: int = 256,
    iterations: int = 20,
    safety_factor: float = 1.2,
    seed: int = 0,
) -> NormEstimate:
    """Estimate max_B ‖H_B‖₂ over random minibatches B of ``batch_size`` rows (LiSSA's real scale).

    LiSSA multiplies by minibatch Hessians H_B, whose norms can exceed ‖H‖ many times for small
    |B|; S ≥ ‖H‖ alone does not keep every step's (H_B + λI)/S within [0, 2]. This runs power
    iteration on ``batches`` random minibatches at once (one batched product per iteration) and
    returns the largest, times ``safety_factor``. It is a sample maximum, not a bound over every
    possible minibatch; LiSSA's growth guard still watches the run.

    Returns:
        A :class:`NormEstimate` (``iterations`` counts minibatch products, one per batch and step).
    """
    if iterations < 1 or batches < 1 or batch_size < 1:
        raise ValueError("iterations, batches and batch_size must be >= 1")
    w = w.detach()
    gen = torch.Generator(device=w.device).manual_seed(seed)
    idx = torch.randint(curvature.n, (batches, batch_size), generator=gen, device=w.device)
    vs = torch.randn((batches, w.numel()), generator=gen, dtype=w.dtype, device=w.device)
    vs = vs / torch.linalg.vector_norm(vs, dim=1, keepdim=True)
    est = torch.zeros(batches, dtype=torch.float64, device=w.device)
    residual = torch.zeros(batches, dtype=torch.float64, device=w.device)
    for _ in range(iterations):
        hv = curvature.minibatch_hvp(w, vs, idx)
        norms = torch.linalg.vector_norm(hv.to(torch.float64), dim=1)
        if not bool(torch.isfinite(norms).all()):
            raise SolverDivergedError("minibatch power iteration met NaN/Inf")
        theta = (vs.to(torch.float64) * hv.to(torch.float64)).sum(dim=1)
        residual = torch.linalg.vector_norm(
            hv.to(torch.float64) - theta.unsqueeze(1) * vs.to(torch.float64), dim=1)
        est = torch.maximum(theta.abs(), norms)
        vs = hv / norms.clamp_min(1e-300).unsqueeze(1).to(hv.dtype)
    top = int(torch.argmax(est))
    estimate = float(est[top])
    method = (f"power iteration on {batches} random minibatch Hessians of {batch_size} rows, "
              f"{iterations} steps each, max ×{safety_factor:g}")
    return NormEstimate(estimate=estimate, bound=safety_factor * estimate,
                        residual=float(residual[top]), iterations=iterations * batches,
                        method=method)


def auto_damping(damping: float, lambda_min: float, margin: float = 1e-2) -> float:
    """Automatic damping of METHOD §5: λ = max(λ, −λ_min + margin).

    Example:
        >>> auto_damping(0.01, -0.087, 0.01)
        0.097
    """
    return max(float(damping), round(-float(lambda_min) + float(margin), 15))
