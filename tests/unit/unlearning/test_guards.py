"""Guards: supported layers, determinism of the objective gradient, finiteness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.unlearning.architectures import build_model
from app.unlearning.guards import (
    ModelShapeError,
    NonFiniteError,
    NondeterministicModelError,
    UnsupportedModelError,
    check_determinism,
    check_finite,
    check_output_shape,
    check_parameter_count,
    check_supported_layers,
)


class _Noisy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)


def test_plain_models_pass() -> None:
    for arch in ("mlp", "logreg"):
        check_supported_layers(build_model(arch, 8, 3, seed=0))
    check_supported_layers(nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(8, 3)))


def test_dropout_is_refused_with_the_reason() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    with pytest.raises(UnsupportedModelError, match=r"Dropout.*random.*METHOD §2"):
        check_supported_layers(model)


def test_batchnorm_is_refused_with_the_reason() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(UnsupportedModelError, match=r"BatchNorm1d.*couples the samples"):
        check_supported_layers(model)


def test_unknown_modules_are_refused_by_name() -> None:
    model = nn.Sequential(nn.Linear(8, 8), _Noisy(), nn.Tanh())
    with pytest.raises(UnsupportedModelError, match=r"\['Tanh', '_Noisy'\]") as info:
        check_supported_layers(model)
    assert isinstance(info.value, ValueError)


def test_deterministic_model_passes_and_keeps_grads_untouched() -> None:
    model = build_model("mlp", 8, 3, seed=0)
    x, y = _batch()
    check_determinism(model, x, y, weight_decay=5e-4)
    assert all(p.grad is None for p in model.parameters())


def test_dropout_in_train_mode_is_nondeterministic() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    x, y = _batch()
    with pytest.raises(NondeterministicModelError, match="different gradients"):
        check_determinism(model, x, y, weight_decay=5e-4)
    check_determinism(model.eval(), x, y, weight_decay=5e-4)  # eval-mode dropout is identity


def test_random_forward_is_nondeterministic() -> None:
    model = nn.Sequential(nn.Linear(8, 8), _Noisy(), nn.Linear(8, 3))
    x, y = _batch()
    with pytest.raises(NondeterministicModelError):
        check_determinism(model, x, y, weight_decay=0.0)


def test_check_finite() -> None:
    check_finite("ok", torch.ones(3))
    check_finite("ints", torch.arange(3))
    with pytest.raises(NonFiniteError, match=r"params is not finite: 1 NaN and 2 Inf of 4"):
        check_finite("params", torch.tensor([1.0, float("nan"), float("inf"), -float("inf")]))
    assert issubclass(NonFiniteError, ArithmeticError)


def test_convolutional_layers_and_eval_batchnorm_pass() -> None:
    for arch in ("allcnn", "resnet18"):
        check_supported_layers(build_model(arch, (1, 8, 8), 3, width=2, seed=0))
    pooled = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2),
                           nn.MaxPool2d(2), nn.AvgPool2d(1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    check_supported_layers(pooled)


def test_batchnorm_without_running_statistics_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(UnsupportedModelError, match=r"track_running_stats=False.*even in eval"):
        check_supported_layers(model)
    with pytest.raises(UnsupportedModelError, match="only zero padding"):
        check_supported_layers(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")))


def test_convnets_are_deterministic_in_eval_mode_and_keep_their_buffers() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 64, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    for arch in ("allcnn", "resnet18"):
        model = build_model(arch, (1, 8, 8), 3, width=2, seed=0)
        before = [b.clone() for b in model.buffers()]
        check_determinism(model, x, y, weight_decay=5e-4)
        assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))


def test_parameter_count_and_output_shape_guards() -> None:
    model = build_model("logreg", 8, 3, seed=0)  # p = 27
    assert check_parameter_count(model, 27) == 27
    with pytest.raises(ModelShapeError, match="27 trainable parameters, more than the limit of 26"):
        check_parameter_count(model, 26)
    with pytest.raises(ModelShapeError, match="no trainable parameters"):
        check_parameter_count(nn.Sequential(nn.ReLU()), 10)
    x, _ = _batch()
    check_output_shape(model, x, 3)
    with pytest.raises(ModelShapeError, match=r"output has shape \(16, 3\), expected \(16, 4\)"):
        check_output_shape(model, x, 4)
    with pytest.raises(ModelShapeError, match="forward pass fails.*RuntimeError"):
        check_output_shape(build_model("logreg", 9, 3, seed=0), x, 3)
