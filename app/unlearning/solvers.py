"""Inverse-Hessian-vector-product solvers: v ≈ (H + λI)⁻¹·g (METHOD §4).

Three solvers share one result type, :class:`IhvpResult`:

- :func:`solve_exact` forms H + λI densely in float64 and solves (small p only; the reference).
- :func:`solve_cg` runs conjugate gradient with full-retain-set products and records the *true*
  final residual ‖g − (H + λI)x‖, recomputed with one extra product.
- :func:`solve_lissa` is the stochastic Neumann-series estimator of [Z24] §3.3 (Agarwal, Bullins,
  Hazan, "Second-order stochastic optimization for machine learning in linear time", JMLR 2017,
  arXiv 1602.03943): r independent chains of s recursions with minibatch Hessians, batched.

Convergence conditions. CG needs A = H + λI symmetric positive definite; meeting a direction with
pᵀAp ≤ 0 proves it is not, and the solver stops with :class:`SolverDivergedError`. The Neumann
series Σ_t (I − A/S)^t·g/S converges to A⁻¹g iff the spectrum of A/S lies in (0, 2); LiSSA's
guard is stated at :func:`solve_lissa`.

A solver never returns NaN or Inf: it raises :class:`SolverDivergedError` instead, naming λ (and S
for LiSSA) so the caller can raise the damping (METHOD §5: λ = max(λ, −λ_min + margin)).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from app.unlearning.hvp import RetainSetCurvature

__all__ = [
    "EXACT_MAX_PARAMS",
    "SOLVERS",
    "IhvpResult",
    "SolverDivergedError",
    "estimate_scale",
    "solve",
    "solve_cg",
    "solve_exact",
    "solve_lissa",
]

EXACT_MAX_PARAMS = 5000
"""Largest p for which :func:`solve_exact` forms the dense p×p Hessian."""

SOLVERS: tuple[str, ...] = ("lissa", "cg", "exact")


# LiSSA's residual guard: an estimate whose true residual exceeds this multiple of ‖g‖ is refused.
RESIDUAL_GUARD = 1.1


class SolverDivergedError(RuntimeError):
    """A solver met an indefinite H + λI, a NaN/Inf, or unbounded growth; no estimate is usable."""


@dataclass(frozen=True)
class IhvpResult:
    """The outcome of one solve v ≈ (H + λI)⁻¹·g.

    Attributes:
        v: ``Tensor [p]`` the estimate, same dtype/device as g.
        solver: ``"exact"``, ``"cg"`` or ``"lissa"``.
        iterations: CG iterations; LiSSA recursion depth s; 0 for exact.
        hvp_count: Hessian-vector products used, full-set and minibatch (per chain) together; the
            split is in ``diagnostics``.
        residual_norm: ‖g − (H + λI)·v‖₂ recomputed with full-retain-set products, or None when
            not computed (LiSSA with ``compute_residual=False``).
        converged: Whether ``residual_norm ≤ rtol·‖g‖`` (exact: the solve succeeded; LiSSA: its
            residual met its ``rtol``; False when the residual is unknown).
        diagnostics: Solver settings and measurements, JSON-compatible scalars only.
    """

    v: torch.Tensor
    solver: str
    iterations: int
    hvp_count: int
    residual_norm: float | None
    converged: bool
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _check_inputs(
    curvature: RetainSetCurvature, w: torch.Tensor, g: torch.Tensor, damping: float
) -> None:
    if not math.isfinite(damping):
        raise ValueError(f"damping must be finite, got {damping!r}")
    p = curvature.num_params
    if w.shape != (p,) or g.shape != (p,):
        raise ValueError(f"w and g must have shape ({p},), got {tuple(w.shape)}, {tuple(g.shape)}")
    if not bool(torch.isfinite(g).all()):
        raise SolverDivergedError("the gradient g contains NaN or Inf")


def _apply(
    curvature: RetainSetCurvature, w: torch.Tensor, v: torch.Tensor, damping: float
) -> torch.Tensor:
    """(H + λI)·v with a full-retain-set product."""
    return curvature.hvp(w, v) + damping * v


def _true_residual(
    curvature: RetainSetCurvature, w: torch.Tensor, g: torch.Tensor, x: torch.Tensor, damping: float
) -> float:
    """‖g − (H + λI)·x‖₂, recomputed from scratch (one product), in float64 at the end."""
    r = g - _apply(curvature, w, x, damping)
    return float(torch.linalg.vector_norm(r.to(torch.float64)))


def solve_exact(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    g: torch.Tensor,
    damping: float,
    *,
    block_size: int = 64,
) -> IhvpResult:
    """v = (H + λI)⁻¹·g with H formed densely (METHOD §4 ``exact``; the reference solver).

    H is built column-block by column-block from full-retain-set products (``block_size`` columns
    per pass), symmetrised, promoted to float64 and solved by LU. The residual is then recomputed
    with one more product in the working dtype.

    Args:
        curvature: Products on the retain set at the point ``w``.
        w: ``Tensor [p]`` the current internal weights w_k.
        g: ``Tensor [p]`` the right-hand side (the retain-set gradient).
        damping: λ, added to the Hessian only.
        block_size: Columns of H formed per batched product.

    Returns:
        An :class:`IhvpResult`; ``diagnostics`` holds the smallest and largest eigenvalue of
        H + λI (``eig_min``, ``eig_max``), which tell whether it is positive definite.

    Raises:
        ValueError: If p > ``EXACT_MAX_PARAMS`` (5000) or inputs are malformed.
        SolverDivergedError: If H + λI is singular or the solution is not finite.
    """
    _check_inputs(curvature, w, g, damping)
    p = curvature.num_params
    if p > EXACT_MAX_PARAMS:
        raise ValueError(
            f"solve_exact forms the dense {p}x{p} Hessian; refused for p > {EXACT_MAX_PARAMS}. "
            f"Use solver 'cg' or 'lissa' for this model."
        )
    start = time.perf_counter()
    before = curvature.hvp_count
    eye = torch.eye(p, dtype=w.dtype, device=w.device)
    cols = [curvature.hvp_batch(w, eye[i : i + block_size]) for i in range(0, p, block_size)]
    h = torch.cat(cols).to(torch.float64)  # row i = H e_i = column i (H symmetric)
    h = 0.5 * (h + h.T)
    a = h + damping * torch.eye(p, dtype=torch.float64, device=w.device)
    eigs = torch.linalg.eigvalsh(a)
    try:
        v64 = torch.linalg.solve(a, g.to(torch.float64))
    except RuntimeError as exc:  # torch raises on an exactly singular matrix
        raise SolverDivergedError(
            f"H + λI is singular at damping λ={damping:g}; raise λ above −λ_min "
            f"(smallest eigenvalue of H + λI: {float(eigs[0]):.3e})"
        ) from exc
    if not bool(torch.isfinite(v64).all()):
        raise SolverDivergedError(
            f"exact solve produced NaN/Inf at damping λ={damping:g}; H + λI is (nearly) singular"
        )
    v = v64.to(w.dtype)
    residual = _true_residual(curvature, w, g, v, damping)
    return IhvpResult(
        v=v,
        solver="exact",
        iterations=0,
        hvp_count=curvature.hvp_count - before,
        residual_norm=residual,
        converged=True,
        diagnostics={
            "damping": float(damping),
            "eig_min": float(eigs[0]),
            "eig_max": float(eigs[-1]),
            "gradient_norm": float(torch.linalg.vector_norm(g.to(torch.float64))),
            "elapsed_s": time.perf_counter() - start,
        },
    )


def solve_cg(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    g: torch.Tensor,
    damping: float,
    *,
    rtol: float = 1e-4,
    max_iter: int = 200,
) -> IhvpResult:
    """Conjugate gradient on (H + λI)·x = g with full-retain-set products (METHOD §4 ``cg``).

    Starts from x₀ = 0 and stops when the recursive residual satisfies ‖r‖ ≤ rtol·‖g‖ or after
    ``max_iter`` iterations. The recursive residual drifts from the true one in finite precision,
    so the final TRUE residual ‖g − (H + λI)x‖ is recomputed with one more product; it is what
    ``residual_norm`` records and what ``converged`` judges (Hestenes & Stiefel 1952; Nocedal &
    Wright, Numerical Optimization, Alg. 5.2).

    Convergence condition: A = H + λI symmetric positive definite. A search direction d with
    dᵀAd ≤ 0 proves A is not, and the solve stops.

    Args:
        curvature: Products on the retain set at the point ``w``.
        w: ``Tensor [p]`` the current internal weights w_k.
        g: ``Tensor [p]`` the right-hand side.
        damping: λ, added to the Hessian only.
        rtol: Relative residual tolerance (> 0).
        max_iter: Iteration cap (≥ 1).

    Returns:
        An :class:`IhvpResult` with ``iterations``, the true ``residual_norm``, and diagnostics
        (``recursive_residual_norm``, ``stop_reason`` ∈ {"tolerance", "max_iter", "zero_rhs"}).

    Raises:
        ValueError: On malformed inputs or settings.
        SolverDivergedError: If dᵀ(H + λI)d ≤ 0 (indefinite H + λI), or on NaN/Inf.
    """
    _check_inputs(curvature, w, g, damping)
    if not rtol > 0:
        raise ValueError(f"rtol must be > 0, got {rtol!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
    start = time.perf_counter()
    before = curvature.hvp_count
    g_norm = float(torch.linalg.vector_norm(g.to(torch.float64)))
    x = torch.zeros_like(g)
    if g_norm == 0.0:
        return IhvpResult(
            v=x,
            solver="cg",
            iterations=0,
            hvp_count=0,
            residual_norm=0.0,
            converged=True,
            diagnostics={
                "damping": float(damping),
                "rtol": rtol,
                "max_iter": max_iter,
                "stop_reason": "zero_rhs",
                "recursive_residual_norm": 0.0,
                "gradient_norm": 0.0,
                "elapsed_s": time.perf_counter() - start,
            },
        )
    r = g.clone()
    d = r.clone()
    rs = float(torch.dot(r.to(torch.float64), r.to(torch.float64)))
    target = rtol * g_norm
    iterations = 0
    stop_reason = "max_iter"
    while iterations < max_iter:
        ad = _apply(curvature, w, d, damping)
        curv = float(torch.dot(d.to(torch.float64), ad.to(torch.float64)))
        if not math.isfinite(curv):
            raise SolverDivergedError(
                f"CG met NaN/Inf in a Hessian-vector product at damping λ={damping:g}"
            )
        if curv <= 0.0:
            raise SolverDivergedError(
                f"CG met non-positive curvature dᵀ(H + λI)d = {curv:.3e} at iteration "
                f"{iterations + 1}: H + λI is indefinite at damping λ={damping:g}. Raise λ above "
                f"−λ_min (automatic damping λ = max(λ, −λ_min + margin))."
            )
        alpha = rs / curv
        x = x + alpha * d
        r = r - alpha * ad
        iterations += 1
        rs_new = float(torch.dot(r.to(torch.float64), r.to(torch.float64)))
        if not math.isfinite(rs_new):
            raise SolverDivergedError(f"CG residual became NaN/Inf at damping λ={damping:g}")
        if math.sqrt(rs_new) <= target:
            stop_reason = "tolerance"
            rs = rs_new
            break
        d = r + (rs_new / rs) * d
        rs = rs_new
    if not bool(torch.isfinite(x).all()):
        raise SolverDivergedError(f"CG iterate became NaN/Inf at damping λ={damping:g}")
    residual = _true_residual(curvature, w, g, x, damping)
    return IhvpResult(
        v=x,
        solver="cg",
        iterations=iterations,
        hvp_count=curvature.hvp_count - before,
        residual_norm=residual,
        converged=residual <= target,
        diagnostics={
            "damping": float(damping),
            "rtol": rtol,
            "max_iter": max_iter,
            "stop_reason": stop_reason,
            "recursive_residual_norm": math.sqrt(rs),
            "gradient_norm": g_norm,
            "elapsed_s": time.perf_counter() - start,
        },
    )


def estimate_scale(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    damping: float,
    *,
    iterations: int = 30,
    safety_factor: float = 1.1,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Estimate ‖H + λI‖₂ by power iteration on full-retain-set products.

    The Rayleigh quotient of power iteration approaches the largest-magnitude eigenvalue from
    below, so the returned scale is ``safety_factor`` × the estimate (Golub & Van Loan, §8.2).

    Args:
        curvature: Products on the retain set at ``w``.
        w: ``Tensor [p]`` the point.
        damping: λ.
        iterations: Power-iteration steps (products).
        safety_factor: Multiplier (≥ 1) applied to the estimate.
        generator: Source of the random start vector.

    Returns:
        ``(scale, estimate)``: S = safety_factor·|μ̂| and the raw estimate |μ̂| of ‖H + λI‖₂.

    Raises:
        SolverDivergedError: If a product is NaN/Inf or the estimate is zero.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if safety_factor < 1:
        raise ValueError(f"safety_factor must be >= 1, got {safety_factor}")
    v = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
    v = v / torch.linalg.vector_norm(v)
    estimate = 0.0
    for _ in range(iterations):
        av = _apply(curvature, w, v, damping)
        estimate = abs(float(torch.dot(v.to(torch.float64), av.to(torch.float64))))
        norm = float(torch.linalg.vector_norm(av.to(torch.float64)))
        if not math.isfinite(norm):
            raise SolverDivergedError(f"power iteration met NaN/Inf at damping λ={damping:g}")
        if norm == 0.0:
            break
        # ‖Av‖ ≥ |vᵀAv| for unit v, and is also a lower bound of ‖A‖: keep the larger.
        estimate = max(estimate, norm)
        v = av / norm
    if estimate == 0.0:
        raise SolverDivergedError("power iteration found H + λI = 0; no LiSSA scale exists")
    return safety_factor * estimate, estimate


def solve_lissa(
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    g: torch.Tensor,
    damping: float,
    *,
    depth: int = 1000,
    repeats: int = 10,
    batch_size: int | None = 10,
    scale: float | None = 1000.0,
    generator: torch.Generator | None = None,
    max_growth: float = 2.0,
    power_iterations: int = 30,
    compute_residual: bool = True,
    rtol: float = 1e-2,
) -> IhvpResult:
    """LiSSA estimate of (H + λI)⁻¹·g ([Z24] §3.3; Agarwal et al. 2017, Alg. 1).

    Each of r chains runs v₀ = g, v_t = g + v_{t−1} − (H_{B_t} + λI)·v_{t−1}/S for t = 1..s, with
    B_t drawn uniformly with replacement from D_r (|B_t| = ``batch_size``); the estimate is the
    mean over chains of v_s/S. The r chains advance together: one batched minibatch product per
    step. For a fixed A = H + λI, v_s/S = Σ_{t=0}^{s} (I − A/S)^t·g/S, whose error against A⁻¹g is
    (I − A/S)^{s+1}·A⁻¹g: the truncation bound of METHOD §4 is ‖(I − A/S)^{s+1}‖·‖g‖/λ_min(A).

    Convergence condition and divergence guard: the series converges iff the spectrum of A/S is
    in (0, 2). If every minibatch A_{B_t}/S has its spectrum in [0, 2], then ‖I − A_{B_t}/S‖ ≤ 1
    and by induction ‖v_t‖ ≤ (t + 1)·‖g‖ for every chain. A chain exceeding that proves some
    A_{B_t}/S left [0, 2]: S is below ‖A_B‖/2, or H_B + λI is indefinite. Mildly negative minibatch
    curvature −μ inflates the bound by at most (e^x − 1)/x with x = s·μ/S, so the guard tolerates
    growth up to ``max_growth``·(t + 1)·‖g‖ (default 2, i.e. x ≲ 1.26) and raises beyond it, or on
    any NaN/Inf. The largest observed ratio ‖v_t‖/((t + 1)‖g‖) is always recorded.

    Args:
        curvature: Products on the retain set at the point ``w``.
        w: ``Tensor [p]`` the current internal weights w_k.
        g: ``Tensor [p]`` the right-hand side.
        damping: λ, added to the Hessian only.
        depth: s, recursions per chain (paper code: 1000).
        repeats: r, independent chains averaged (paper code: 10).
        batch_size: |B_t| (paper code: 10). None: every product uses the whole retain set
            (H_B = H, the deterministic Neumann series; chains are then identical, so use
            ``repeats=1``).
        scale: S ≥ ‖H + λI‖ (paper code: 1000). None: estimated by power iteration on the full
            retain-set H + λI (``power_iterations`` products) times a safety factor 1.1.
        generator: Source of the minibatch indices (and of the power-iteration start vector).
        max_growth: Guard threshold, see above (≥ 1).
        power_iterations: Products used when ``scale`` is None.
        compute_residual: Recompute the true residual ‖g − (H + λI)v‖ with one full product.
        rtol: ``converged`` means residual ≤ rtol·‖g‖ (LiSSA has no stopping rule of its own).

    Returns:
        An :class:`IhvpResult`; ``diagnostics`` records depth, repeats, batch_size, scale, its
        provenance ("declared" or "estimated"), the power-iteration estimate if any, the final
        ‖v‖, the largest growth ratio and the chains' spread.

    Raises:
        ValueError: On malformed inputs or settings.
        SolverDivergedError: On NaN/Inf or growth beyond the guard (the message names λ and S).
    """
    _check_inputs(curvature, w, g, damping)
    if depth < 1 or repeats < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(
            f"depth, repeats and batch_size must be >= 1, got {depth}, {repeats}, {batch_size}"
        )
    if max_growth < 1:
        raise ValueError(f"max_growth must be >= 1, got {max_growth}")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number or None, got {scale!r}")
    start = time.perf_counter()
    full_before = curvature.hvp_count
    mb_before = curvature.minibatch_hvp_count
    if generator is None:
        generator = torch.Generator(device=w.device)
        generator.seed()
    scale_estimate: float | None = None
    if scale is None and batch_size is not None:
        # The recursion multiplies by minibatch Hessians, whose norms reach many times ‖H‖ for
        # small |B| (measured on the MNIST MLP: ≈213 for |B| = 10 against ‖H‖ ≈ 6.3), so S must
        # bound those, not ‖H‖.
        from app.unlearning.spectrum import minibatch_power_norm

        norm = minibatch_power_norm(curvature, w, batch_size, iterations=power_iterations)
        scale, scale_estimate = norm.bound + damping, norm.estimate
        provenance = "estimated"
    elif scale is None:
        scale, scale_estimate = estimate_scale(
            curvature, w, damping, iterations=power_iterations, generator=generator
        )
        provenance = "estimated"
    else:
        provenance = "declared"
    s_val = float(scale)
    w = w.detach()
    g = g.detach()
    g_norm = float(torch.linalg.vector_norm(g.to(torch.float64)))
    vs = g.unsqueeze(0).repeat(repeats, 1)
    n = curvature.n
    max_ratio = 0.0
    for t in range(1, depth + 1):
        # v_t = g + v_{t−1} − (H_B v_{t−1} + λ v_{t−1})/S, in place on the chains' own buffer.
        if batch_size is None:
            hv = curvature.hvp_batch(w, vs)
            vs.mul_(1.0 - damping / s_val).add_(g).sub_(hv, alpha=1.0 / s_val)
        else:
            idx = torch.randint(n, (repeats, batch_size), generator=generator, device=w.device)
            curvature.lissa_step_(w, vs, g, idx, damping, s_val)
        norms = torch.linalg.vector_norm(vs, dim=1)
        top = float(norms.max())
        if not math.isfinite(top):
            raise SolverDivergedError(
                f"LiSSA produced NaN/Inf at step {t} (damping λ={damping:g}, scale S={s_val:g}); "
                f"H + λI is likely indefinite or S too small: raise λ or S"
            )
        if g_norm > 0:
            ratio = top / ((t + 1) * g_norm)
            max_ratio = max(max_ratio, ratio)
            if ratio > max_growth:
                raise SolverDivergedError(
                    f"LiSSA diverged at step {t}: ‖v_t‖ = {top:.3e} > {max_growth:g}·(t+1)·‖g‖ "
                    f"= {max_growth * (t + 1) * g_norm:.3e}, so some minibatch (H_B + λI)/S left "
                    f"the spectrum [0, 2]: H + λI is indefinite at damping λ={damping:g} (raise λ "
                    f"above −λ_min) or the scale S={s_val:g} is below ‖H_B + λI‖/2 (raise S)"
                )
    chains = vs / s_val
    v = chains.mean(dim=0)
    residual: float | None = None
    if compute_residual:
        residual = _true_residual(curvature, w, g, v, damping)
        if residual > RESIDUAL_GUARD * g_norm:
            # Worse than v = 0: the recursion drifted without tripping the growth guard (slow
            # divergence along a negative-curvature direction). Never publish such a step. The
            # 10% allowance absorbs minibatch noise in an otherwise sound estimate.
            raise SolverDivergedError(
                f"LiSSA's estimate is worse than zero: ‖g − (H + λI)v‖ = {residual:.3e} > "
                f"{RESIDUAL_GUARD:g}·‖g‖ = {RESIDUAL_GUARD * g_norm:.3e} (damping λ={damping:g}, scale S={s_val:g}); H + λI is likely "
                "indefinite: raise λ above −λ_min or use automatic damping"
            )
    spread = (
        float(torch.linalg.vector_norm((chains - v).to(torch.float64), dim=1).mean())
        if repeats > 1
        else 0.0
    )
    full_count = curvature.hvp_count - full_before
    mb_count = curvature.minibatch_hvp_count - mb_before
    return IhvpResult(
        v=v,
        solver="lissa",
        iterations=depth,
        hvp_count=full_count + mb_count,
        residual_norm=residual,
        converged=residual is not None and residual <= rtol * g_norm,
        diagnostics={
            "damping": float(damping),
            "depth": depth,
            "repeats": repeats,
            "batch_size": batch_size,
            "scale": s_val,
            "scale_provenance": provenance,
            "scale_estimate": scale_estimate,
            "power_iterations": power_iterations if provenance == "estimated" else 0,
            "max_growth": max_growth,
            "max_growth_ratio": max_ratio,
            "final_v_norm": float(torch.linalg.vector_norm(v.to(torch.float64))),
            "chain_spread": spread,
            "rtol": rtol,
            "gradient_norm": g_norm,
            "full_hvp_count": full_count,
            "minibatch_hvp_count": mb_count,
            "elapsed_s": time.perf_counter() - start,
        },
    )


def solve(
    method: str,
    curvature: RetainSetCurvature,
    w: torch.Tensor,
    g: torch.Tensor,
    damping: float,
    **options: Any,
) -> IhvpResult:
    """Dispatch to :func:`solve_lissa`, :func:`solve_cg` or :func:`solve_exact`.

    Args:
        method: ``"lissa"``, ``"cg"`` or ``"exact"``.
        curvature, w, g, damping: As for the solvers.
        **options: Keyword settings of the chosen solver.

    Returns:
        The solver's :class:`IhvpResult`.

    Raises:
        ValueError: If ``method`` is unknown or an option is not a setting of that solver.
    """
    solvers: dict[str, Callable[..., IhvpResult]] = {
        "lissa": solve_lissa,
        "cg": solve_cg,
        "exact": solve_exact,
    }
    if method not in solvers:
        raise ValueError(f"unknown solver {method!r}; expected one of {SOLVERS}")
    fn = solvers[method]
    allowed = {
        name
        for name, param in inspect.signature(fn).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for solver {method!r}; allowed: {sorted(allowed)}"
        )
    return fn(curvature, w, g, damping, **options)
