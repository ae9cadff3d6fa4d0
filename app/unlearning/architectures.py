"""Model architectures that the certified Newton update supports.

``mlp`` is the paper's MNIST network ([Z24] §5: two hidden layers of 32 ReLU units); ``logreg``
is multinomial logistic regression (one Linear layer; with weight decay its objective is strongly
convex, the [G20] setting); ``allcnn`` and ``resnet18`` are the paper's CIFAR-10 and SVHN networks
(:mod:`app.unlearning.convnets`). All contain only layers accepted by
:func:`app.unlearning.guards.check_supported_layers`, and all take flattened rows ``[n, d]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from app.unlearning.convnets import (
    ALLCNN_WIDTH,
    RESNET18_WIDTH,
    build_allcnn,
    build_resnet18,
    init_module_,
)

__all__ = ["ARCHITECTURES", "build_model"]

ARCHITECTURES: tuple[str, ...] = ("mlp", "logreg", "allcnn", "resnet18")


def build_model(
    architecture: str,
    input_shape: int | tuple[int, ...],
    num_classes: int,
    *,
    hidden: tuple[int, ...] = (32, 32),
    width: int | None = None,
    seed: int,
) -> nn.Module:
    """Build a freshly initialised float32 CPU model, in eval mode, whose weights depend only on ``seed``.

    Layers are created on the meta device and then initialised from a private
    ``torch.Generator``, so the global RNG is neither read nor advanced (safe in threaded workers).

    Args:
        architecture: ``"mlp"`` (Linear-ReLU per hidden width, then a Linear head), ``"logreg"``
            (a single Linear layer; ``hidden`` is ignored), ``"allcnn"`` or ``"resnet18"``
            (:func:`~app.unlearning.convnets.build_allcnn`, :func:`~app.unlearning.convnets.build_resnet18`).
        input_shape: Shape of one sample: ``(C, H, W)`` for images, or d (or ``(d,)``) for flat
            features (784 for MNIST, 64 for digits). The MLP and logreg use its product.
        num_classes: Number of output logits.
        hidden: Hidden widths of the MLP; the paper's MLP is ``(32, 32)`` ([Z24] §5).
        width: First-stage channels of a convolutional network; ``None`` = the paper's
            (96 for AllCNN, 64 for ResNet-18). Ignored by the MLP and logreg.
        seed: Initialisation seed.

    Returns:
        A module mapping ``[n, prod(input_shape)]`` to logits ``[n, num_classes]``.

    Raises:
        ValueError: Unknown architecture (names the allowed ones), a non-positive size, or a
            convolutional network on a non-image shape.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if architecture == "allcnn":
        return build_allcnn(shape, num_classes, width=ALLCNN_WIDTH if width is None else width, seed=seed)
    if architecture == "resnet18":
        return build_resnet18(shape, num_classes, width=RESNET18_WIDTH if width is None else width, seed=seed)
    widths = () if architecture == "logreg" else tuple(hidden)
    sizes = (math.prod(shape), *widths, num_classes)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in (*shape, *sizes)):
        raise ValueError(f"layer sizes must be positive integers, got {sizes}")

    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, device="meta"))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).to_empty(device="cpu")
    init_module_(model, torch.Generator(device="cpu").manual_seed(seed))
    return model.eval()
