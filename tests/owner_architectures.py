"""Owner-registered architecture factories for the admission tests, by dotted path
``tests.owner_architectures:NAME``: one that passes every guard, and one failing each guard.

Each is called as ``factory(input_shape, num_classes)`` (app.unlearning.admission) and receives
flattened rows ``[n, prod(input_shape)]``.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Passes every guard: conv, BatchNorm (eval mode), ReLU, max pool, global pool, linear head."""
    channels = input_shape[0]
    return nn.Sequential(
        nn.Unflatten(1, input_shape),
        nn.Conv2d(channels, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


def with_dropout(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Refused by the supported-layers guard (dropout)."""
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, num_classes))


def noisy_forward(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Refused by the determinism guard: an ``nn.Linear`` (a supported type) whose instance
    ``forward`` adds fresh noise, so only running it twice can tell."""
    d = int(torch.tensor(input_shape).prod())
    head = nn.Linear(d, num_classes)
    plain = head.forward
    head.forward = lambda x: plain(x + 1e-3 * torch.randn_like(x))  # type: ignore[method-assign]
    return nn.Sequential(head)


def unseeded_init(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Refused by the reproducible-initialisation guard: weights from the OS's entropy."""
    d = int(torch.tensor(input_shape).prod())
    model = nn.Sequential(nn.Linear(d, num_classes))
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(model[0].weight.shape, generator=generator))
    return model


def wide(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Refused by the parameter-count guard under a small ``LETHE_MAX_PARAMETERS`` (p = 76,810)."""
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Linear(d, 1024), nn.ReLU(), nn.Linear(1024, num_classes))


def wrong_output(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Refused by the output-shape guard: one logit too many."""
    d = int(torch.tensor(input_shape).prod())
    return nn.Sequential(nn.Linear(d, num_classes + 1))


def not_a_module(input_shape: tuple[int, ...], num_classes: int) -> object:
    """Refused by the build guard: returns no ``nn.Module``."""
    return {"input_shape": input_shape}


NOT_CALLABLE = 3
