"""Checks that refuse models and numbers the certificate could not stand behind.

Exception tree (each also a built-in base, so generic handlers still work)::

    ValueError
    +-- UnsupportedModelError       a layer the method cannot certify
    +-- NondeterministicModelError  two identical forward/backward passes differ
    +-- ModelShapeError             too many parameters, or outputs not [n, num_classes]
    ArithmeticError
    +-- NonFiniteError              NaN or Inf in a tensor

The certified Newton update needs the objective L(w; S) to be one deterministic function of w
that is a mean over independent per-sample terms: its gradient and Hessian-vector products are
recomputed later on the retain set and must describe the same function that was trained
([Z24] §3; METHOD §2).

BatchNorm is accepted only as ``BatchNorm2d`` with running statistics: the pipeline evaluates it in
eval mode always (training included, :mod:`app.unlearning.convnets`), where it is a fixed
per-sample affine map, so the objective stays a mean of per-sample losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from app.unlearning.convnets import BasicBlock

__all__ = [
    "SUPPORTED_LAYERS",
    "ModelShapeError",
    "NonFiniteError",
    "NondeterministicModelError",
    "UnsupportedModelError",
    "check_determinism",
    "check_finite",
    "check_output_shape",
    "check_parameter_count",
    "check_supported_layers",
]

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.ReLU,
    nn.Sequential,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    BasicBlock,
)
"""Module types accepted as they are (exact types: a subclass may override ``forward``).

``BatchNorm2d`` only with ``track_running_stats=True`` (it then runs in eval mode everywhere);
``Conv2d`` only with ``padding_mode="zeros"`` (the modes whose gradients were checked).
"""

_WHY: dict[type[nn.Module], str] = {
    nn.modules.dropout._DropoutNd: (
        "dropout makes the forward pass random, so the trained objective has no single gradient or "
        "Hessian to invert (METHOD §2: no dropout)"
    ),
    nn.modules.batchnorm._BatchNorm: (
        "batch normalisation in train mode couples the samples of a batch, so L(w; D) is not a "
        "mean of per-sample losses and removing samples changes every term (METHOD §2: BatchNorm "
        "only in eval mode); only BatchNorm2d with running statistics is supported, and Lethe "
        "runs it in eval mode always"
    ),
}


class UnsupportedModelError(ValueError):
    """The model contains a layer that the certified update does not support."""


class NondeterministicModelError(ValueError):
    """Two identical forward/backward passes produced different gradients."""


class ModelShapeError(ValueError):
    """The model has more parameters than allowed, or its outputs are not ``[n, num_classes]``."""


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
        if type(module) is nn.BatchNorm2d and not module.track_running_stats:
            offending["BatchNorm2d(track_running_stats=False)"] = (
                "without running statistics BatchNorm normalises by the batch's own statistics "
                "even in eval mode, so samples of a batch are coupled (METHOD §2)"
            )
            continue
        if type(module) is nn.Conv2d and module.padding_mode != "zeros":
            offending[f"Conv2d(padding_mode={module.padding_mode!r})"] = "only zero padding is supported"
            continue
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


def check_parameter_count(model: nn.Module, max_parameters: int) -> int:
    """Refuse a model with more than ``max_parameters`` trainable parameters.

    Args:
        model: The model.
        max_parameters: The limit (the ``LETHE_MAX_PARAMETERS`` setting).

    Returns:
        p, the number of trainable parameters.

    Raises:
        ModelShapeError: p exceeds the limit (both numbers named), or p is 0.
    """
    p = sum(t.numel() for t in model.parameters() if t.requires_grad)
    if p > max_parameters:
        raise ModelShapeError(
            f"the model has {p:,} trainable parameters, more than the limit of {max_parameters:,} "
            "(LETHE_MAX_PARAMETERS)"
        )
    if p == 0:
        raise ModelShapeError("the model has no trainable parameters")
    return p


def check_output_shape(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """Refuse a model whose outputs on ``x`` [b, d] are not logits ``[b, num_classes]``.

    Evaluated in eval mode without gradients; the model's mode is restored.

    Args:
        model: The model.
        x: ``Tensor [b, d]``, a few rows of the dataset (flattened, as the pipeline feeds them).
        num_classes: The dataset's number of classes.

    Raises:
        ModelShapeError: The output shape or dtype differs (the forward's own error is named).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # the owner's forward pass: any failure is a shape failure here
        raise ModelShapeError(
            f"the model's forward pass fails on flattened rows of shape {tuple(x.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    want = (x.shape[0], num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelShapeError(f"the model's output has shape {got}, expected {want} (logits)")
    if out.dtype != x.dtype:
        raise ModelShapeError(f"the model's output has dtype {out.dtype}, expected {x.dtype}")


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
