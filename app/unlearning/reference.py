"""A straightforward reference implementation of the LiSSA estimator ([Z24] §3.3), for benchmarks.

It does what the paper's public code does, one operation at a time: for each chain, for each
recursion step, build the minibatch objective from scratch, take its gradient with
``create_graph=True``, then differentiate ⟨∇L_B, v⟩ once more (double backward). Chains run one
after another; nothing is batched or reused. It exists only to be measured against
:func:`app.unlearning.solvers.solve_lissa`, which must give the same estimate for the same
minibatches (to rounding) and run much faster.

The minibatch indices are explicit (``idx`` [s, r, b]), so both implementations can be fed the
same draws: :func:`lissa_draws` reproduces exactly the draws :func:`solve_lissa` makes from a
generator with a declared scale S (one ``torch.randint(n, (r, b))`` per step).
"""

from __future__ import annotations

import torch

from app.unlearning.objective import Objective

__all__ = ["lissa_draws", "reference_lissa"]


def lissa_draws(
    n: int, depth: int, repeats: int, batch_size: int, generator: torch.Generator
) -> torch.Tensor:
    """The minibatch indices ``solve_lissa`` draws from ``generator`` (declared scale).

    Args:
        n: |D_r|.
        depth, repeats, batch_size: s, r and |B|.
        generator: Seeded like the one handed to ``solve_lissa``; it is advanced.

    Returns:
        ``LongTensor [s, r, b]``: row t−1 holds step t's indices for every chain.
    """
    return torch.stack(
        [torch.randint(n, (repeats, batch_size), generator=generator) for _ in range(depth)]
    )


def reference_lissa(
    objective: Objective,
    w: torch.Tensor,
    g: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    damping: float,
    scale: float,
    idx: torch.Tensor,
) -> torch.Tensor:
    """LiSSA, naively: v_t = g + v_{t−1} − (H_{B_t} + λI)·v_{t−1}/S per chain; mean of v_s/S.

    Args:
        objective: L(w; S) = mean CE + (wd/2)‖w‖²; H_B is the Hessian of L on the minibatch B.
        w: ``Tensor [p]`` the point.
        g: ``Tensor [p]`` the right-hand side.
        x, y: The retain set (``idx`` indexes its rows).
        damping: λ.
        scale: S.
        idx: ``LongTensor [s, r, b]`` the minibatches (see :func:`lissa_draws`).

    Returns:
        ``Tensor [p]`` the estimate of (H + λI)⁻¹·g.
    """
    depth, repeats, _ = idx.shape
    w = w.detach()
    g = g.detach()
    chains = []
    for j in range(repeats):
        v = g.clone()
        for t in range(depth):
            batch = idx[t, j]
            w_leaf = w.clone().requires_grad_(True)
            loss = objective.loss(w_leaf, x[batch], y[batch])
            (grad,) = torch.autograd.grad(loss, w_leaf, create_graph=True)
            (hv,) = torch.autograd.grad(grad, w_leaf, grad_outputs=v)
            v = g + v - (hv + damping * v) / scale
        chains.append(v / scale)
    return torch.stack(chains).mean(dim=0)
