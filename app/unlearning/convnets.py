"""The paper's convolutional networks: All-CNN-C and a CIFAR-style ResNet-18 ([Z24] §5).

Both take flattened rows ``[n, C·H·W]`` (the pipeline keeps data as ``[n, d]`` everywhere) and
un-flatten them with ``nn.Unflatten`` as their first layer; both end in a global average pool, so
any input of at least 4x4 pixels works (8x8 digits in the tests, 32x32 CIFAR-10 and SVHN in the
paper).

BatchNorm: every ``BatchNorm2d`` here runs in eval mode always, in training as in every curvature
product, with its running statistics left at their initial values (mean 0, variance 1). The
statistics therefore never see a sample: the trained objective is exactly the certified one (a
mean of per-sample losses, METHOD §2), and the buffers in a weights file carry no information
about any training sample, so they need no noise and no place in w. What remains of a BatchNorm
layer is a learnable per-channel affine map (γ, β are trainable parameters, part of w). Without
batch statistics to rescale activations, ResNet-18 starts each residual branch at zero (γ = 0 in
the branch's last BatchNorm, Goyal et al. 2017 "Accurate, large minibatch SGD" §5.1), so every
block begins as the identity and the deep stack trains stably.

Sources: Springenberg, Dosovitskiy, Brox, Riedmiller, "Striving for simplicity: the all
convolutional net", ICLR 2015 workshop (All-CNN-C); He, Zhang, Ren, Sun, "Deep residual learning
for image recognition", CVPR 2016 (ResNet-18, BasicBlock [2, 2, 2, 2]); the 3x3-stem CIFAR variant
is the common one for 32x32 inputs; [Z24] §5 (AllCNN on CIFAR-10, ResNet-18 on SVHN).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "ALLCNN_WIDTH",
    "RESNET18_WIDTH",
    "BasicBlock",
    "build_allcnn",
    "build_resnet18",
    "global_average_pool",
    "init_module_",
]

ALLCNN_WIDTH = 96
"""Channels of All-CNN-C's first stage (the second stage has twice as many), Springenberg §3."""

RESNET18_WIDTH = 64
"""Channels of ResNet-18's first stage (stages have 1, 2, 4, 8 times as many), He et al. Tab. 1."""


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).

    The shortcut is the identity when shapes agree, else a strided 1x1 convolution and a
    BatchNorm (He et al. 2016, option B).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (and of the shortcut), 1 or 2.

    Shapes:
        ``[n, in_channels, H, W]`` → ``[n, out_channels, ⌈H/stride⌉, ⌈W/stride⌉]``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, device="meta")
        self.bn1 = nn.BatchNorm2d(out_channels, device="meta")
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, device="meta")
        self.bn2 = nn.BatchNorm2d(out_channels, device="meta")
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False, device="meta"),
                nn.BatchNorm2d(out_channels, device="meta"),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, in_channels, H, W]`` → ``[n, out_channels, H', W']``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _check_sizes(input_shape: tuple[int, ...], num_classes: int, width: int) -> None:
    if len(input_shape) != 3 or any(not isinstance(s, int) or s < 1 for s in input_shape):
        raise ValueError(
            f"a convolutional network needs an image input shape (C, H, W), got {input_shape}"
        )
    if input_shape[1] < 4 or input_shape[2] < 4:
        raise ValueError(f"images must be at least 4x4 pixels, got {input_shape[1:]}")
    for name, value in (("num_classes", num_classes), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def init_module_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Initialise every layer of ``model`` from ``generator``, in ``model.modules()`` order.

    PyTorch's defaults, drawn from the private generator so that the global RNG is neither read
    nor advanced: Conv2d and Linear weights ~ kaiming_uniform(a=√5) = U(±1/√fan_in), biases
    U(±1/√fan_in); BatchNorm γ = 1, β = 0, running mean 0, variance 1, counter 0.

    Args:
        model: A module built on the meta device and moved with ``to_empty``.
        generator: The seeded CPU generator.

    Returns:
        ``model`` (initialised in place).
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def global_average_pool(input_shape: tuple[int, ...], halvings: int) -> nn.AvgPool2d:
    """Average over the whole feature map left after ``halvings`` stride-2 convolutions.

    A stride-2 3x3 convolution with padding 1 (and a stride-2 1x1 shortcut) maps H to ⌈H/2⌉.
    A fixed-size ``AvgPool2d`` rather than ``AdaptiveAvgPool2d(1)``: the same numbers, and its
    CUDA backward is deterministic (the adaptive one's is not, so it fails under
    ``torch.use_deterministic_algorithms``, which GPU workers set).
    """
    h, w = input_shape[1], input_shape[2]
    for _ in range(halvings):
        h, w = -(-h // 2), -(-w // 2)
    return nn.AvgPool2d((h, w))


def _finish(model: nn.Module, seed: int) -> nn.Module:
    model = model.to_empty(device="cpu")
    init_module_(model, torch.Generator(device="cpu").manual_seed(seed))
    return model.eval()


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    padding = kernel // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding, bias=not batch_norm, device="meta")
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout, device="meta"))
    layers.append(nn.ReLU())
    return layers


def build_allcnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: int = ALLCNN_WIDTH,
    batch_norm: bool = True,
    seed: int,
) -> nn.Sequential:
    """All-CNN-C (Springenberg et al. 2015, Tab. 2 model C) for ``[n, C·H·W]`` rows.

    conv3x3 w, conv3x3 w, conv3x3 w stride 2, conv3x3 2w, conv3x3 2w, conv3x3 2w stride 2,
    conv3x3 2w, conv1x1 2w, conv1x1 num_classes, global average pool. Every convolution but the
    last is followed by BatchNorm (eval mode, frozen statistics; see the module docstring) and
    ReLU, as in the AllCNN used by the unlearning literature's code (Golatkar et al. 2020, whose
    setting [Z24] §5 follows); ``batch_norm=False`` gives the original (biases instead). The
    original's dropout is left out: the certified update refuses dropout (METHOD §2). All 3x3
    convolutions pad by 1 (the original's unpadded 3x3 would empty 8x8 inputs). At the paper's
    width 96 on 3x32x32 inputs: 1,370,986 parameters.

    Args:
        input_shape: ``(C, H, W)`` of one sample; rows are flattened ``[n, C·H·W]``.
        num_classes: Logits per sample.
        width: w, the first stage's channels (paper: 96).
        batch_norm: BatchNorm after each hidden convolution.
        seed: Initialisation seed (private generator).

    Returns:
        ``nn.Sequential`` mapping ``[n, C·H·W]`` to ``[n, num_classes]``, in eval mode.

    Raises:
        ValueError: A non-image shape, images under 4x4, or a non-positive size.
    """
    input_shape = tuple(input_shape)
    _check_sizes(input_shape, num_classes, width)
    w, w2 = width, 2 * width
    plan = [  # (in, out, kernel, stride)
        (input_shape[0], w, 3, 1), (w, w, 3, 1), (w, w, 3, 2),
        (w, w2, 3, 1), (w2, w2, 3, 1), (w2, w2, 3, 2),
        (w2, w2, 3, 1), (w2, w2, 1, 1),
    ]
    layers: list[nn.Module] = [nn.Unflatten(1, input_shape)]
    for cin, cout, kernel, stride in plan:
        layers += _conv_bn_relu(cin, cout, kernel, stride, batch_norm)
    layers += [
        nn.Conv2d(w2, num_classes, 1, device="meta"),
        global_average_pool(input_shape, halvings=2),
        nn.Flatten(),
    ]
    model = _finish(nn.Sequential(*layers), seed)
    assert isinstance(model, nn.Sequential)
    return model


def build_resnet18(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: int = RESNET18_WIDTH,
    seed: int,
) -> nn.Sequential:
    """ResNet-18 (He et al. 2016) with the 3x3 stem used for 32x32 images, for ``[n, C·H·W]`` rows.

    conv3x3 w + BatchNorm + ReLU, then four stages of two :class:`BasicBlock` each with w, 2w, 4w,
    8w channels and strides 1, 2, 2, 2, global average pool, Linear(8w → num_classes). BatchNorm
    runs in eval mode with frozen statistics (module docstring); each block's last BatchNorm
    starts at γ = 0 so that every block starts as the identity. At the paper's width 64 on
    3x32x32 inputs: 11,173,962 parameters.

    Args:
        input_shape: ``(C, H, W)`` of one sample; rows are flattened ``[n, C·H·W]``.
        num_classes: Logits per sample.
        width: w, the first stage's channels (paper: 64).
        seed: Initialisation seed (private generator).

    Returns:
        ``nn.Sequential`` mapping ``[n, C·H·W]`` to ``[n, num_classes]``, in eval mode.

    Raises:
        ValueError: A non-image shape, images under 4x4, or a non-positive size.
    """
    input_shape = tuple(input_shape)
    _check_sizes(input_shape, num_classes, width)
    layers: list[nn.Module] = [nn.Unflatten(1, input_shape)]
    layers += _conv_bn_relu(input_shape[0], width, 3, 1, batch_norm=True)
    channels = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        out = width * 2**stage
        layers += [BasicBlock(channels, out, stride), BasicBlock(out, out, 1)]
        channels = out
    layers += [global_average_pool(input_shape, halvings=3), nn.Flatten(),
               nn.Linear(channels, num_classes, device="meta")]
    model = _finish(nn.Sequential(*layers), seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)
    assert isinstance(model, nn.Sequential)
    return model
