"""Tiny float64 AllCNN and ResNet-18 for the golden curvature and solver tests (a few hundred
trainable parameters, so a dense ``torch.autograd.functional.hessian`` is cheap).

Both take 1x4x4 images, flattened to 16 features, and have 3 classes. The weights are moved off
their initialisation (ResNet's zero-initialised γ would hide half of each block) and the
BatchNorm running statistics are set to non-trivial values, so that the tests see them used in
eval mode. ResNet-18 at base width 1 has 2,910 parameters; all but its BatchNorm affine
parameters, the second stage's first block and the head are frozen (``requires_grad=False``,
outside w), leaving 233 trainable parameters that still reach through every residual block.
"""

from __future__ import annotations

import torch
from torch import nn

from app.unlearning.architectures import build_model

INPUT_SHAPE = (1, 4, 4)
NUM_FEATURES = 16
NUM_CLASSES = 3
CONV_CASES = ("allcnn", "resnet18")


def tiny_convnet(name: str) -> nn.Module:
    """``"allcnn"`` (width 2, p = 677) or ``"resnet18"`` (width 1, p = 233 trainable), float64."""
    gen = torch.Generator().manual_seed(99)
    width = 2 if name == "allcnn" else 1
    model = build_model(name, INPUT_SHAPE, NUM_CLASSES, width=width, seed=0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
    if name == "resnet18":
        # Layers: 0 Unflatten, 1-3 stem (conv, BN, ReLU), 4-11 blocks, 12 pool, 13 flatten, 14 head.
        def trainable(pname: str) -> bool:
            batch_norm = pname.startswith("2.") or ".bn" in pname or ".shortcut.1." in pname
            return batch_norm or pname.startswith(("6.", "14."))

        for pname, p in model.named_parameters():
            p.requires_grad_(trainable(pname))
    return model
