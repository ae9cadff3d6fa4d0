"""Golden tests of the objective and the retain-set curvature against dense float64 Hessians.

Case registry: a tiny logistic regression (p = 105), a tiny two-layer MLP (p = 244), and tiny
AllCNN (p = 677) and ResNet-18 (p = 233 trainable) with BatchNorm in eval mode
(``tiny_convnets``), float64, 200 samples (60 for the convolutional ones, whose dense Hessians
cost more), fixed seeds. References come from ``torch.autograd`` directly (autograd.grad and
autograd.functional.hessian on the plain objective), independent of the chunked code under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import hessian

from app.unlearning.architectures import build_model
from app.unlearning.hvp import ProductMode, RetainSetCurvature
from app.unlearning.objective import Objective
from app.unlearning.params import load_flat_params
from tiny_convnets import CONV_CASES, NUM_CLASSES, NUM_FEATURES, tiny_convnet


WEIGHT_DECAY = 5e-3


@dataclass
class Case:
    objective: Objective
    w: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


def make_case(name: str) -> Case:
    """``logreg``: 20 inputs, 5 classes (p = 105); ``mlp``: 10-16-4 with ReLU (p = 244)."""
    gen = torch.Generator().manual_seed(1234)
    n = 60 if name in CONV_CASES else 200
    if name == "logreg":
        d, k = 20, 5
        model = build_model("logreg", d, k, seed=0).double()
    elif name == "mlp":
        d, k = 10, 4
        model = build_model("mlp", d, k, hidden=(16,), seed=0).double()
    elif name in CONV_CASES:
        d, k = NUM_FEATURES, NUM_CLASSES
        model = tiny_convnet(name)
    else:
        raise KeyError(name)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    teacher = torch.randn(d, k, generator=gen, dtype=torch.float64)
    y = (x @ teacher + 0.5 * torch.randn(n, k, generator=gen, dtype=torch.float64)).argmax(1)
    objective = Objective(model, WEIGHT_DECAY)
    return Case(objective, objective.initial_params(), x, y)


CASES = ("logreg", "mlp", *CONV_CASES)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(request.param)


def dense_hessian(obj: Objective, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    h = hessian(lambda w_: obj.loss(w_, x, y), w)
    return h


def test_loss_matches_module_forward(case: Case) -> None:
    obj = case.objective
    w = case.w + 0.01
    load_flat_params(obj.model, w)
    expected = F.cross_entropy(obj.model(case.x), case.y) + 0.5 * WEIGHT_DECAY * (w @ w)
    assert torch.allclose(obj.loss(w, case.x, case.y), expected, rtol=1e-12, atol=0)
    assert torch.allclose(
        obj.data_loss_sum(w, case.x, case.y), F.cross_entropy(obj.model(case.x), case.y) * len(case.y)
    )


def test_objective_rejects_negative_weight_decay() -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        Objective(torch.nn.Linear(2, 2), -1.0)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 200, 8192])
def test_gradient_exact_and_invariant_to_chunk_size(case: Case, chunk_size: int) -> None:
    w = case.w.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(case.objective.loss(w, case.x, case.y), w)
    curv = RetainSetCurvature(case.objective, case.x, case.y, chunk_size=chunk_size)
    g = curv.gradient(case.w)
    assert torch.allclose(g, expected, rtol=1e-10, atol=1e-13)
    assert curv.gradient_count == 1


def test_loss_over_retain_set(case: Case) -> None:
    curv = RetainSetCurvature(case.objective, case.x, case.y, chunk_size=33)
    expected = float(case.objective.loss(case.w, case.x, case.y))
    assert curv.loss(case.w) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize("chunk_size", [13, 8192])
def test_hvp_matches_dense_hessian(case: Case, mode: ProductMode, chunk_size: int) -> None:
    h = dense_hessian(case.objective, case.w, case.x, case.y)
    curv = RetainSetCurvature(case.objective, case.x, case.y, chunk_size=chunk_size, mode=mode)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(case.w.shape, generator=gen, dtype=torch.float64)
    assert torch.allclose(curv.hvp(case.w, v), h @ v, rtol=1e-9, atol=1e-12)
    vs = torch.randn(3, case.w.shape[0], generator=gen, dtype=torch.float64)
    assert torch.allclose(curv.hvp_batch(case.w, vs), vs @ h, rtol=1e-9, atol=1e-12)
    assert curv.hvp_count == 4


@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
def test_minibatch_hvp_matches_dense_minibatch_hessians(case: Case, mode: ProductMode) -> None:
    curv = RetainSetCurvature(case.objective, case.x, case.y, mode=mode)
    gen = torch.Generator().manual_seed(1)
    r, b = 4, 6
    idx = torch.randint(case.x.shape[0], (r, b), generator=gen)
    vs = torch.randn(r, case.w.shape[0], generator=gen, dtype=torch.float64)
    out = curv.minibatch_hvp(case.w, vs, idx)
    for j in range(r):
        hb = dense_hessian(case.objective, case.w, case.x[idx[j]], case.y[idx[j]])
        assert torch.allclose(out[j], hb @ vs[j], rtol=1e-9, atol=1e-12)
    assert curv.minibatch_hvp_count == r


def test_minibatch_hessians_average_to_full_hessian(case: Case) -> None:
    """Scale check: E[H_B] = H, so the mean over a partition into batches equals H·v."""
    curv = RetainSetCurvature(case.objective, case.x, case.y)
    v = torch.randn(case.w.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    idx = torch.arange(len(case.y)).reshape(-1, 10)
    mean = curv.minibatch_hvp(case.w, v.expand(idx.shape[0], -1), idx).mean(0)
    assert torch.allclose(mean, curv.hvp(case.w, v), rtol=1e-10, atol=1e-13)


def test_curvature_validates_inputs(case: Case) -> None:
    obj = case.objective
    with pytest.raises(ValueError, match="empty"):
        RetainSetCurvature(obj, case.x[:0], case.y[:0])
    with pytest.raises(ValueError, match="samples"):
        RetainSetCurvature(obj, case.x, case.y[:-1])
    with pytest.raises(ValueError, match="chunk_size"):
        RetainSetCurvature(obj, case.x, case.y, chunk_size=0)
    with pytest.raises(ValueError, match="mode"):
        RetainSetCurvature(obj, case.x, case.y, mode="nope")  # type: ignore[arg-type]
    curv = RetainSetCurvature(obj, case.x, case.y)
    with pytest.raises(ValueError, match="shape"):
        curv.gradient(case.w[:-1])
    with pytest.raises(ValueError, match="shape"):
        curv.hvp(case.w, case.w[:-1])
    with pytest.raises(ValueError, match="idx"):
        curv.minibatch_hvp(case.w, case.w.expand(2, -1), torch.zeros(3, 2, dtype=torch.long))


def test_module_parameters_untouched(case: Case) -> None:
    before = case.objective.initial_params()
    buffers = [b.clone() for b in case.objective.model.buffers()]
    for mode in ("double_backward", "forward_over_reverse"):
        curv = RetainSetCurvature(case.objective, case.x, case.y, mode=mode)  # type: ignore[arg-type]
        curv.hvp(case.w + 1.0, case.w)
        curv.gradient(case.w + 1.0)
        curv.minibatch_hvp(case.w, case.w.expand(2, -1), torch.zeros(2, 3, dtype=torch.long))
    assert torch.equal(case.objective.initial_params(), before)
    # BatchNorm running statistics (and its counter) are bitwise what they were (METHOD §2).
    after = list(case.objective.model.buffers())
    assert len(after) == len(buffers) and all(torch.equal(a, b) for a, b in zip(after, buffers))
    assert not case.objective.model.training
