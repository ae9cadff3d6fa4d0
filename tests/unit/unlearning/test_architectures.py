"""Model builders: the paper's MLP and logistic regression, seeded without global RNG."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.unlearning.architectures import ARCHITECTURES, build_model
from app.unlearning.guards import check_supported_layers


def test_mlp_is_the_papers_network() -> None:
    model = build_model("mlp", 784, 10, seed=0)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 32), (32, 32), (32, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in model) == 2
    assert sum(p.numel() for p in model.parameters()) == 784 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert model(torch.zeros(3, 784)).shape == (3, 10)


def test_logreg_is_one_linear_layer() -> None:
    model = build_model("logreg", 64, 10, seed=0)
    assert [type(m) for m in model.modules()] == [nn.Sequential, nn.Linear]
    assert sum(p.numel() for p in model.parameters()) == 650


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_init_depends_only_on_seed(architecture: str) -> None:
    rng_before = torch.random.get_rng_state()
    a = build_model(architecture, 64, 10, seed=7)
    b = build_model(architecture, 64, 10, seed=7)
    c = build_model(architecture, 64, 10, seed=8)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    check_supported_layers(a)


def test_init_matches_torch_default_bounds() -> None:
    model = build_model("mlp", 100, 10, hidden=(50,), seed=0)
    bound = 1 / 100**0.5
    assert float(model[0].weight.detach().abs().max()) <= bound
    assert float(model[0].bias.detach().abs().max()) <= bound
    assert model[0].weight.dtype == torch.float32 and model[0].weight.device.type == "cpu"


def test_unknown_architecture_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="mlp, logreg"):
        build_model("resnet18", 784, 10, seed=0)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        build_model("mlp", 0, 10, seed=0)
