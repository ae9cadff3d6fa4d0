"""The projected Newton step of certified unlearning (METHOD §3, [Z24] Alg. 1 and 2).

Given the private internal weights w_k and the retain set D_r, one step computes

    g = ∇L(w_k; D_r),   v ≈ (H + λI)⁻¹·g,   w_{k+1} = Π_C(w_k − v),

where Π_C projects onto the ball ‖w‖₂ ≤ C that training also enforced ([Z24] §3). The projection
is free: the retrained model lies in the same ball, and projecting onto a convex set never
increases the distance to a point inside it. Noise is added elsewhere (:mod:`release`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from app.unlearning.hvp import ProductMode, RetainSetCurvature
from app.unlearning.objective import Objective
from app.unlearning.solvers import IhvpResult, solve

__all__ = ["NewtonStepResult", "newton_update", "project_to_ball", "unlearn_step"]


def project_to_ball(w: torch.Tensor, radius: float) -> torch.Tensor:
    """Π_C(w): the Euclidean projection onto {‖w‖₂ ≤ C} ([Z24] §3).

    Args:
        w: ``Tensor [p]`` the point.
        radius: C > 0 (``math.inf`` disables the constraint).

    Returns:
        A new ``Tensor [p]``: ``w`` itself (copied) if ‖w‖ ≤ C, else ``w·C/‖w‖``.

    Raises:
        ValueError: If ``radius`` is not positive.

    Example:
        >>> project_to_ball(torch.tensor([3.0, 4.0]), 1.0)
        tensor([0.6000, 0.8000])
    """
    if not radius > 0:  # also rejects NaN
        raise ValueError(f"radius must be > 0, got {radius!r}")
    w = w.detach()
    norm = float(torch.linalg.vector_norm(w.to(torch.float64)))
    if math.isinf(radius) or norm <= radius:
        return w.clone()
    return w * (radius / norm)


def newton_update(w_k: torch.Tensor, v: torch.Tensor, radius: float) -> torch.Tensor:
    """w_{k+1} = Π_C(w_k − v), METHOD §3 step 4.

    Args:
        w_k: ``Tensor [p]`` the current internal weights.
        v: ``Tensor [p]`` the inverse-Hessian-vector product (H + λI)⁻¹·g.
        radius: C > 0.

    Returns:
        ``Tensor [p]``, the new internal weights.
    """
    if w_k.shape != v.shape:
        raise ValueError(f"w_k has shape {tuple(w_k.shape)} but v has {tuple(v.shape)}")
    return project_to_ball(w_k.detach() - v.detach(), radius)


@dataclass(frozen=True)
class NewtonStepResult:
    """One unlearning step's outcome (METHOD §3 steps 2-4).

    Attributes:
        params_new: ``Tensor [p]`` the noiseless internal weights w_{k+1} (never to be served).
        ihvp: The solver's result for v ≈ (H + λI)⁻¹·g.
        gradient_norm: ‖g‖₂ = ‖∇L(w_k; D_r)‖₂.
        step_norm: ‖w_{k+1} − w_k‖₂ (after projection).
        elapsed_s: Wall time per phase in seconds: ``gradient`` (building the retain-set view and
            g), ``solve`` and ``update``; the phases do not overlap, so their sum is the total.
    """

    params_new: torch.Tensor
    ihvp: IhvpResult
    gradient_norm: float
    step_norm: float
    elapsed_s: dict[str, float] = field(default_factory=dict)


def unlearn_step(
    objective: Objective,
    w_k: torch.Tensor,
    x_retain: torch.Tensor,
    y_retain: torch.Tensor,
    *,
    damping: float,
    radius: float,
    solver: str = "lissa",
    solver_options: dict[str, Any] | None = None,
    chunk_size: int = 8192,
    generator: torch.Generator | None = None,
    mode: ProductMode = "double_backward",
) -> NewtonStepResult:
    """Run METHOD §3 steps 2-4 on the retain set ([Z24] Alg. 1).

    Args:
        objective: L(w; S) with the training weight decay.
        w_k: ``Tensor [p]`` the current internal weights.
        x_retain: ``Tensor [n, ...]`` the retain-set inputs D_r (forget set already removed).
        y_retain: ``LongTensor [n]`` their labels.
        damping: λ ≥ 0, added to the Hessian only.
        radius: C, the training ball radius.
        solver: ``"lissa"``, ``"cg"`` or ``"exact"``.
        solver_options: Keyword settings of that solver (e.g. ``depth``, ``rtol``).
        chunk_size: Samples per forward pass for full-retain-set quantities.
        generator: LiSSA's minibatch sampler (ignored by the other solvers).
        mode: Hessian-vector product mode, see :class:`RetainSetCurvature`.

    Returns:
        A :class:`NewtonStepResult`.

    Raises:
        ValueError: On malformed inputs or an unknown solver.
        SolverDivergedError: If the solver meets an indefinite H + λI or NaN/Inf.
    """
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be finite and >= 0, got {damping!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    options = dict(solver_options or {})
    if solver == "lissa" and generator is not None:
        options.setdefault("generator", generator)
    t0 = time.perf_counter()
    w_k = w_k.detach()
    curvature = RetainSetCurvature(objective, x_retain, y_retain, chunk_size=chunk_size, mode=mode)
    g = curvature.gradient(w_k)
    t1 = time.perf_counter()
    ihvp = solve(solver, curvature, w_k, g, damping, **options)
    t2 = time.perf_counter()
    params_new = newton_update(w_k, ihvp.v, radius)
    t3 = time.perf_counter()
    return NewtonStepResult(
        params_new=params_new,
        ihvp=ihvp,
        gradient_norm=float(torch.linalg.vector_norm(g.to(torch.float64))),
        step_norm=float(torch.linalg.vector_norm((params_new - w_k).to(torch.float64))),
        elapsed_s={"gradient": t1 - t0, "solve": t2 - t1, "update": t3 - t2},
    )
