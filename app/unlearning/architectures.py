"""Model architectures that the certified Newton update supports.

``mlp`` is the paper's MNIST network ([Z24] §5: two hidden layers of 32 ReLU units); ``logreg``
is multinomial logistic regression (one Linear layer; with weight decay its objective is strongly
convex, the [G20] setting). Both contain only layers accepted by
:func:`app.unlearning.guards.check_supported_layers`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "build_model"]

ARCHITECTURES: tuple[str, ...] = ("mlp", "logreg")


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from ``generator``.

    Weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)), same for bias.
    """
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def build_model(
    architecture: str,
    in_features: int,
    num_classes: int,
    *,
    hidden: tuple[int, ...] = (32, 32),
    seed: int,
) -> nn.Module:
    """Build a freshly initialised float32 CPU model whose weights depend only on ``seed``.

    Layers are created on the meta device and then initialised from a private
    ``torch.Generator``, so the global RNG is neither read nor advanced (safe in threaded workers).

    Args:
        architecture: ``"mlp"`` (Linear-ReLU per hidden width, then a Linear head) or ``"logreg"``
            (a single Linear layer; ``hidden`` is ignored).
        in_features: Input dimension d (784 for MNIST, 64 for digits).
        num_classes: Number of output logits.
        hidden: Hidden widths of the MLP; the paper's MLP is ``(32, 32)`` ([Z24] §5).
        seed: Initialisation seed.

    Returns:
        An ``nn.Sequential`` mapping ``[n, in_features]`` to logits ``[n, num_classes]``.

    Raises:
        ValueError: Unknown architecture (names the allowed ones) or a non-positive size.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    widths = () if architecture == "logreg" else tuple(hidden)
    sizes = (in_features, *widths, num_classes)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
        raise ValueError(f"layer sizes must be positive integers, got {sizes}")

    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, device="meta"))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).to_empty(device="cpu")

    generator = torch.Generator(device="cpu").manual_seed(seed)
    for layer in model:
        if isinstance(layer, nn.Linear):
            _init_linear(layer, generator)
    return model
