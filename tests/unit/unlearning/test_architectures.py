"""Model builders: the paper's MLP, logistic regression, AllCNN and ResNet-18, seeded without global RNG."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.unlearning.architectures import ARCHITECTURES, build_model
from app.unlearning.convnets import BasicBlock
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
    shape = (1, 8, 8)  # the digits' images; the MLP and logreg see 64 features
    a = build_model(architecture, shape, 10, width=4, seed=7)
    b = build_model(architecture, shape, 10, width=4, seed=7)
    c = build_model(architecture, shape, 10, width=4, seed=8)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name  # buffers (BatchNorm statistics) too
    assert not a.training
    assert a(torch.zeros(5, 64)).shape == (5, 10)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    check_supported_layers(a)


def test_init_matches_torch_default_bounds() -> None:
    model = build_model("mlp", 100, 10, hidden=(50,), seed=0)
    bound = 1 / 100**0.5
    assert float(model[0].weight.detach().abs().max()) <= bound
    assert float(model[0].bias.detach().abs().max()) <= bound
    assert model[0].weight.dtype == torch.float32 and model[0].weight.device.type == "cpu"


def test_unknown_architecture_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="mlp, logreg, allcnn, resnet18"):
        build_model("vgg16", 784, 10, seed=0)


def test_paper_sizes_of_the_convolutional_networks() -> None:
    """Parameter counts at the paper's widths on 3x32x32 (CIFAR-10 / SVHN) inputs."""
    allcnn = build_model("allcnn", (3, 32, 32), 10, seed=0)
    resnet = build_model("resnet18", (3, 32, 32), 10, seed=0)
    assert sum(p.numel() for p in allcnn.parameters()) == 1_370_986
    assert sum(p.numel() for p in resnet.parameters()) == 11_173_962  # He et al.'s 11.2M
    convs = [m for m in allcnn.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [96, 96, 96, 192, 192, 192, 192, 192, 10]
    assert [m.stride[0] for m in convs] == [1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert sum(isinstance(m, BasicBlock) for m in resnet.modules()) == 8
    batchnorms = [m for m in resnet.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(float(m.running_mean.abs().max()) == 0 and float(m.running_var.min()) == 1
               for m in batchnorms)


def test_convolutional_networks_need_an_image_shape() -> None:
    with pytest.raises(ValueError, match=r"image input shape \(C, H, W\), got \(64,\)"):
        build_model("allcnn", 64, 10, seed=0)
    with pytest.raises(ValueError, match="at least 4x4"):
        build_model("resnet18", (1, 2, 2), 10, seed=0)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        build_model("resnet18", (1, 8, 8), 10, width=-1, seed=0)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        build_model("mlp", 0, 10, seed=0)
