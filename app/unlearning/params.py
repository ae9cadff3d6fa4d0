"""Flat views of a model's trainable parameters.

The method works on one vector w of length p holding every trainable parameter ([Z24] §3; METHOD
§1). Its order is fixed as ``model.parameters()`` order, restricted to parameters with
``requires_grad``; every function here uses that same order so that a flat vector written by one
part of the system (training, HVPs, solvers, releases) reads back identically in another.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["flatten_params", "load_flat_params", "param_shapes", "unflatten"]


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def param_shapes(model: nn.Module) -> list[tuple[str, torch.Size]]:
    """Names and shapes of the trainable parameters, in flat-vector order.

    Args:
        model: Any module.

    Returns:
        ``[(name, shape), ...]`` in ``model.named_parameters()`` order (trainable ones only).
    """
    return [(name, p.shape) for name, p in _trainable(model)]


def flatten_params(model: nn.Module) -> torch.Tensor:
    """Copy all trainable parameters into one detached vector.

    Args:
        model: Any module.

    Returns:
        ``Tensor [p]`` with the model's dtype and device; a copy, not a view, so later optimizer
        steps do not change it.
    """
    params = [p.detach().reshape(-1) for _, p in _trainable(model)]
    if not params:
        return torch.empty(0)
    return torch.cat(params).clone()


def _check_length(model: nn.Module, w: torch.Tensor) -> list[tuple[str, nn.Parameter]]:
    named = _trainable(model)
    expected = sum(p.numel() for _, p in named)
    if w.dim() != 1 or w.numel() != expected:
        raise ValueError(
            f"flat parameter vector has shape {tuple(w.shape)}, expected ({expected},) "
            f"for this model"
        )
    return named


def load_flat_params(model: nn.Module, w: torch.Tensor) -> None:
    """Write a flat vector into the model's trainable parameters, in place.

    Args:
        model: The module to overwrite.
        w: ``Tensor [p]`` in :func:`flatten_params` order; cast to each parameter's dtype/device.

    Raises:
        ValueError: If ``w`` is not one-dimensional of length p.
    """
    named = _check_length(model, w)
    offset = 0
    with torch.no_grad():
        for _, p in named:
            k = p.numel()
            p.copy_(w[offset : offset + k].view_as(p))
            offset += k


def unflatten(model: nn.Module, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a flat vector into named views shaped like the model's parameters.

    The result plugs into ``torch.func.functional_call(model, unflatten(model, w), (x,))`` so that
    gradients and Hessian-vector products can be taken with respect to ``w`` directly.

    Args:
        model: The module whose parameter layout to follow.
        w: ``Tensor [p]`` in :func:`flatten_params` order.

    Returns:
        ``{name: view of w}``; views share storage (and autograd history) with ``w``.

    Raises:
        ValueError: If ``w`` is not one-dimensional of length p.
    """
    named = _check_length(model, w)
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, p in named:
        k = p.numel()
        out[name] = w[offset : offset + k].view(p.shape)
        offset += k
    return out
