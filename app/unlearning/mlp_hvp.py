"""Exact Hessian-vector products for a plain ReLU MLP, in closed form (Pearlmutter's R-operator).

For ``nn.Sequential(Linear, ReLU, ..., Linear)`` with cross-entropy, the product H·v of the data
term is one forward pass, one R-forward pass (directional derivatives of every activation), one
backward pass and one R-backward pass, written out with batched matrix products. No autograd graph
is built, so the per-call overhead of two autograd traversals disappears; the numbers are the same
as double backward up to floating-point summation order (a test checks it). This is the fast path
of :meth:`app.unlearning.hvp.RetainSetCurvature.minibatch_hvp` and ``hvp_batch`` for such models;
any other architecture uses autograd.

With z_l = a_{l−1}W_lᵀ + b_l, a_l = relu(z_l) (l < L), logits z_L, δ_L = softmax(z_L) − onehot(y),
δ_{l−1} = (δ_l W_l) ⊙ 1[z_{l−1} > 0], and a tangent (V_l, c_l) per layer:

    Rz_l = Ra_{l−1}W_lᵀ + a_{l−1}V_lᵀ + c_l,      Ra_l = Rz_l ⊙ 1[z_l > 0],  Ra_0 = 0,
    Rδ_L = p ⊙ Rz_L − p·⟨p, Rz_L⟩,                Rδ_{l−1} = (Rδ_l W_l + δ_l V_l) ⊙ 1[z_{l−1} > 0],
    (H v)_{W_l} = Rδ_lᵀ a_{l−1} + δ_lᵀ Ra_{l−1},   (H v)_{b_l} = Σ_i Rδ_l,

(the ReLU's second derivative is zero almost everywhere, as in autograd). Source: Pearlmutter,
"Fast exact multiplication by the Hessian", Neural Computation 6(1), 1994, §4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["is_plain_mlp", "mlp_grad_sum", "mlp_hvp_sum"]


def is_plain_mlp(model: nn.Module) -> bool:
    """Whether ``model`` is ``Sequential(Linear, ReLU, Linear, ReLU, ..., Linear)`` with biases,
    every parameter trainable and no buffers (the closed form applies)."""
    if not isinstance(model, nn.Sequential) or len(model) == 0 or len(model) % 2 == 0:
        return False
    for i, layer in enumerate(model):
        if i % 2 == 0:
            if type(layer) is not nn.Linear or layer.bias is None:
                return False
        elif type(layer) is not nn.ReLU:
            return False
    if any(not p.requires_grad for p in model.parameters()):
        return False
    return not any(True for _ in model.buffers())


def mlp_hvp_sum(
    weights: list[torch.Tensor],
    tangents: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> list[torch.Tensor]:
    """(Σ_i ∇²CE_i)·v for r chains at once, each chain on its own batch.

    Args:
        weights: ``[W_1, b_1, ..., W_L, b_L]`` shared by every chain (``W_l`` [o, i], ``b_l`` [o]).
        tangents: The same list for the directions, with a leading chain axis (``[r, o, i]``,
            ``[r, o]``).
        x: ``Tensor [r, b, d]`` each chain's inputs.
        y: ``LongTensor [r, b]`` their labels.

    Returns:
        The product per parameter, ``[r, o, i]`` / ``[r, o]``, summed (not averaged) over each
        chain's batch.
    """
    n_layers = len(weights) // 2
    ws = weights[0::2]
    bs = weights[1::2]
    vw = tangents[0::2]
    vb = tangents[1::2]
    acts = [x]
    racts: list[torch.Tensor | None] = [None]
    masks = []
    a = x
    ra: torch.Tensor | None = None
    for k in range(n_layers):
        z = F.linear(a, ws[k], bs[k])
        rz = torch.baddbmm(vb[k].unsqueeze(1), a, vw[k].transpose(1, 2))
        if ra is not None:
            rz.add_(F.linear(ra, ws[k]))
        if k < n_layers - 1:
            mask = z > 0
            masks.append(mask)
            a = z * mask
            ra = rz * mask
            acts.append(a)
            racts.append(ra)
        else:
            logits, rlogits = z, rz
    p = torch.softmax(logits, dim=-1)
    delta = p.clone()
    delta.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(y, -1, dtype=p.dtype).unsqueeze(-1))
    prz = p * rlogits
    rdelta = prz - p * prz.sum(dim=-1, keepdim=True)
    out: list[torch.Tensor] = [torch.empty(0)] * (2 * n_layers)
    for k in range(n_layers - 1, -1, -1):
        a_prev = acts[k]
        ra_prev = racts[k]
        gw = torch.bmm(rdelta.transpose(1, 2), a_prev)
        if ra_prev is not None:
            gw.baddbmm_(delta.transpose(1, 2), ra_prev)
        out[2 * k] = gw
        out[2 * k + 1] = rdelta.sum(dim=1)
        if k > 0:
            mask = masks[k - 1]
            new_rdelta = torch.matmul(rdelta, ws[k]).baddbmm_(delta, vw[k]).mul_(mask)
            delta = torch.matmul(delta, ws[k]).mul_(mask)
            rdelta = new_rdelta
    return out


def mlp_grad_sum(weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Σ_i ∇CE_i over the batch (no regulariser), by the closed-form backward pass.

    Args:
        weights: ``[W_1, b_1, ..., W_L, b_L]``.
        x: ``Tensor [b, d]`` inputs.
        y: ``LongTensor [b]`` labels.

    Returns:
        The gradient per parameter, shaped like ``weights``.
    """
    n_layers = len(weights) // 2
    ws = weights[0::2]
    bs = weights[1::2]
    acts = [x]
    masks = []
    a = x
    for k in range(n_layers):
        z = F.linear(a, ws[k], bs[k])
        if k < n_layers - 1:
            mask = z > 0
            masks.append(mask)
            a = z.mul_(mask)
            acts.append(a)
        else:
            logits = z
    delta = torch.softmax(logits, dim=-1)
    delta.scatter_add_(-1, y.unsqueeze(-1),
                       torch.full_like(y, -1, dtype=delta.dtype).unsqueeze(-1))
    out: list[torch.Tensor] = [torch.empty(0)] * (2 * n_layers)
    for k in range(n_layers - 1, -1, -1):
        out[2 * k] = delta.t() @ acts[k]
        out[2 * k + 1] = delta.sum(dim=0)
        if k > 0:
            delta = (delta @ ws[k]).mul_(masks[k - 1])
    return out
