"""Checks that refuse models and numbers the certificate could not stand behind.

Exception tree (each also a built-in base, so generic handlers still work)::

    ValueError
    +-- UnsupportedModelError       a layer the method cannot certify
    +-- NondeterministicModelError  two identical forward/backward passes differ
    ArithmeticError
    +-- NonFiniteError              NaN or Inf in a tensor

The certified Newton update needs the objective L(w; S) to be one deterministic function of w
that is a mean over independent per-sample terms: its gradient and Hessian-vector products are
recomputed later on the retain set and must describe the same function that was trained
([Z24] §3; METHOD §2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SUPPORTED_LAYERS",
    "NonFiniteError",
    "NondeterministicModelError",
    "UnsupportedModelError",
    "check_determinism",
    "check_finite",
    "check_supported_layers",
]

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.ReLU,
    nn.Sequential,
    nn.Flatten,
    nn.Identity,
)
"""Module types accepted as they are (exact types: a subclass may override ``forward``)."""

_WHY: dict[type[nn.Module], str] = {
    nn.modules.dropout._DropoutNd: (
        "dropout makes the forward pass random, so the trained objective has no single gradient or "
        "Hessian to invert (METHOD §2: no dropout)"
    ),
    nn.modules.batchnorm._BatchNorm: (
        "batch normalisation in train mode couples the samples of a batch, so L(w; D) is not a "
        "mean of per-sample losses and removing samples changes every term (METHOD §2: BatchNorm "
        "only in eval mode); it is not supported by this version"
    ),
}


class UnsupportedModelError(ValueError):
    """The model contains a layer that the certified update does not support."""


class NondeterministicModelError(ValueError):
    """Two identical forward/backward passes produced different gradients."""


class NonFiniteError(ArithmeticError):
    """A tensor that must be finite holds NaN or Inf."""


def check_supported_layers(model: nn.Module) -> None:
    """Refuse a model containing any module outside :data:`SUPPORTED_LAYERS`.

    Args:
        model: The model to inspect (all submodules, recursively).

    Raises:
        UnsupportedModelError: Naming every offending module type, with the reason for dropout and
            batch normalisation ([Z24] §3; METHOD §2).
    """
    offending: dict[str, str] = {}
    for module in model.modules():
        if type(module) in SUPPORTED_LAYERS:
            continue
        name = type(module).__name__
        reason = next((why for base, why in _WHY.items() if isinstance(module, base)), None)
        offending[name] = reason or "its forward pass is not one the method has been checked for"
    if offending:
        details = "; ".join(f"{name}: {why}" for name, why in sorted(offending.items()))
        allowed = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
        raise UnsupportedModelError(
            f"unsupported layers {sorted(offending)} (allowed: {allowed}). {details}"
        )


def _objective_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float
) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    loss = loss + 0.5 * weight_decay * sum(p.pow(2).sum() for p in params)
    return list(torch.autograd.grad(loss, params))


def check_determinism(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float
) -> None:
    """Refuse a model whose objective gradient differs between two identical passes.

    Computes ∇L(w; B) for L = mean cross-entropy + (wd/2)·‖w‖² twice on the same batch, in the
    model's current mode, and compares bitwise. Parameters' ``.grad`` are left untouched.

    Args:
        model: The model to check.
        x: ``Tensor [b, d]``, a small batch (a few dozen rows suffice).
        y: ``Tensor [b]`` int64 labels.
        weight_decay: wd of the training recipe.

    Raises:
        NondeterministicModelError: If the two gradients differ (e.g. dropout, random noise, or
            non-deterministic kernels); METHOD §2.
        NonFiniteError: If the gradient holds NaN or Inf.
    """
    first = _objective_grads(model, x, y, weight_decay)
    second = _objective_grads(model, x, y, weight_decay)
    for a, b in zip(first, second, strict=True):
        if not torch.equal(a, b):
            diff = max(float((u - v).abs().max()) for u, v in zip(first, second, strict=True))
            raise NondeterministicModelError(
                "two identical forward/backward passes gave different gradients (max abs "
                f"difference {diff:.3g}); the certified update needs a deterministic model "
                "(no dropout or random layers, deterministic kernels; METHOD §2)"
            )
    check_finite("objective gradient", torch.cat([g.reshape(-1) for g in first]))


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise if ``tensor`` holds NaN or Inf.

    Args:
        name: What the tensor is, for the message (e.g. ``"params"``).
        tensor: Any tensor.

    Raises:
        NonFiniteError: Naming ``name`` and the NaN/Inf counts.
    """
    if tensor.is_floating_point() or tensor.is_complex():
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(tensor).sum())
            n_inf = int(finite.numel() - finite.sum()) - n_nan
            raise NonFiniteError(
                f"{name} is not finite: {n_nan} NaN and {n_inf} Inf of {tensor.numel()} entries"
            )
