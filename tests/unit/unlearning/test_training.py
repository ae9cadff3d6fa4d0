"""Certifiable training ([Z24] §3, METHOD §2) and the flat-parameter helpers, on digits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from app.unlearning.architectures import build_model
from app.unlearning.datasets import load_builtin
from app.unlearning.params import flatten_params, load_flat_params, param_shapes, unflatten
from app.unlearning.training import (
    TrainingRecipe,
    accuracy,
    full_gradient,
    project_to_ball_,
    train,
)

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Data:
    ds = load_builtin("digits", tmp_path_factory.mktemp("data"))
    return (
        torch.from_numpy(ds.x_train),
        torch.from_numpy(ds.y_train),
        torch.from_numpy(ds.x_test),
        torch.from_numpy(ds.y_test),
    )


def test_recipe_defaults_are_the_papers() -> None:
    r = TrainingRecipe()
    assert (r.epochs, r.lr, r.weight_decay, r.batch_size, r.radius, r.seed) == (
        50, 1e-3, 5e-4, 128, 20.0, 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "field, value", [("epochs", -1), ("lr", 0.0), ("weight_decay", -1.0), ("batch_size", 0),
                     ("radius", 0.0)]
)  # fmt: skip
def test_recipe_refuses_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        TrainingRecipe(**{field: value})


def test_projection_scales_only_outside_the_ball() -> None:
    inside = [torch.tensor([0.3, 0.4]), torch.tensor([0.0])]
    project_to_ball_(inside, radius=1.0)
    assert torch.equal(inside[0], torch.tensor([0.3, 0.4]))  # bitwise untouched
    outside = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]
    project_to_ball_(outside, radius=1.0)
    torch.testing.assert_close(torch.cat(outside), torch.tensor([0.6, 0.0, 0.8]))


def test_training_keeps_weights_in_a_tiny_ball(digits: Data) -> None:
    x, y, _, _ = digits
    model = build_model("mlp", 64, 10, seed=0)
    assert float(flatten_params(model).norm()) > 1.0  # the constraint is active
    result = train(model, x, y, TrainingRecipe(epochs=2, lr=1e-2, radius=1.0))
    assert float(result.params.norm()) <= 1.0 + 1e-6
    assert result.steps == 2 * 12 and result.epochs == 2


def test_zero_epochs_still_projects(digits: Data) -> None:
    x, y, _, _ = digits
    model = build_model("mlp", 64, 10, seed=0)
    result = train(model, x, y, TrainingRecipe(epochs=0, radius=0.5))
    assert result.steps == 0 and float(result.params.norm()) <= 0.5 + 1e-6


def test_training_is_bitwise_deterministic(digits: Data) -> None:
    x, y, _, _ = digits
    recipe = TrainingRecipe(epochs=3, lr=1e-2, seed=3)
    runs = [train(build_model("mlp", 64, 10, seed=1), x, y, recipe) for _ in range(2)]
    assert torch.equal(runs[0].params, runs[1].params)
    assert runs[0].final_grad_norm == runs[1].final_grad_norm
    other = train(build_model("mlp", 64, 10, seed=1), x, y, dataclasses.replace(recipe, seed=4))
    assert not torch.equal(runs[0].params, other.params)


def test_logreg_learns_digits(digits: Data) -> None:
    x, y, xt, yt = digits
    model = build_model("logreg", 64, 10, seed=0)
    seen: list[float] = []
    result = train(model, x, y, TrainingRecipe(epochs=5, lr=5e-2), progress=seen.append)
    assert accuracy(model, xt, yt) > 0.9
    assert seen == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert torch.equal(result.params, flatten_params(model))


def test_final_grad_norm_is_the_full_objective_gradient(digits: Data) -> None:
    x, y, _, _ = digits
    recipe = TrainingRecipe(epochs=1, lr=1e-2, weight_decay=1e-2)
    model = build_model("mlp", 64, 10, seed=0)
    result = train(model, x, y, recipe)

    # Independent float64 computation of ∇(mean CE + (wd/2)‖w‖²) in one pass.
    w = result.params.double().requires_grad_(True)
    model64 = build_model("mlp", 64, 10, seed=0).double()
    logits = functional_call(model64, unflatten(model64, w), (x.double(),))
    loss = F.cross_entropy(logits, y) + 0.5 * recipe.weight_decay * w.pow(2).sum()
    (grad,) = torch.autograd.grad(loss, w)
    assert result.final_grad_norm == pytest.approx(float(grad.norm()), rel=1e-4)

    chunked = full_gradient(model, x, y, recipe.weight_decay, chunk=100)
    torch.testing.assert_close(chunked.double(), grad, rtol=1e-4, atol=1e-6)


def test_retraining_on_a_subset(digits: Data) -> None:
    x, y, _, _ = digits
    retain = torch.arange(100, x.shape[0])
    result = train(build_model("logreg", 64, 10, seed=0), x[retain], y[retain],
                   TrainingRecipe(epochs=1, batch_size=50))  # fmt: skip
    assert result.steps == 27  # ceil(1337 / 50)


def test_train_restores_thread_count_and_mode(digits: Data) -> None:
    x, y, _, _ = digits
    threads = torch.get_num_threads()
    model = build_model("logreg", 64, 10, seed=0).eval()
    train(model, x, y, TrainingRecipe(epochs=1), num_threads=1)
    assert torch.get_num_threads() == threads and not model.training


def test_bad_data_is_refused(digits: Data) -> None:
    x, y, _, _ = digits
    model = build_model("logreg", 64, 10, seed=0)
    with pytest.raises(ValueError, match="int64"):
        train(model, x, y.int(), TrainingRecipe(epochs=1))
    with pytest.raises(ValueError, match="expected x"):
        accuracy(model, x, y[:-1])


def test_flat_params_round_trip() -> None:
    model = build_model("mlp", 64, 10, seed=0)
    names = [name for name, _ in param_shapes(model)]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    w = flatten_params(model)
    assert w.shape == (sum(p.numel() for p in model.parameters()),)
    assert torch.equal(w[: 64 * 32], model[0].weight.detach().reshape(-1))

    load_flat_params(model, torch.zeros_like(w))
    assert all(float(p.detach().abs().sum()) == 0 for p in model.parameters())
    load_flat_params(model, w)
    assert torch.equal(flatten_params(model), w)
    with pytest.raises(ValueError, match="expected"):
        load_flat_params(model, w[:-1])

    views = unflatten(model, w)
    assert views["2.weight"].shape == (32, 32)
    assert views["4.bias"].data_ptr() == w[-10:].data_ptr()  # views, not copies
    out = functional_call(model, views, (torch.ones(2, 64),))
    torch.testing.assert_close(out, model(torch.ones(2, 64)))
