"""Admission of built-in and owner-registered architectures: every guard, each refusal named."""

from __future__ import annotations

import pytest
import torch

from app.unlearning.admission import (
    ArchitectureRefused,
    admit_model,
    build_registered,
    guard_results,
    load_factory,
)
from app.unlearning.architectures import ARCHITECTURES, build_model

SHAPE = (1, 8, 8)
GUARDS = ["build", "supported layers", "parameter count", "output shape",
          "reproducible initialisation", "determinism"]


def _rows() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(32, 64, generator=gen), torch.randint(0, 10, (32,), generator=gen)


def _admit(architecture: str, target: str | None, max_parameters: int = 100_000,
           width: int | None = 4) -> torch.nn.Module:
    x, y = _rows()
    return admit_model(architecture, target, SHAPE, 10, x, y, seed=3,
                       max_parameters=max_parameters, weight_decay=5e-4, width=width)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_builtins_pass_every_guard(architecture: str) -> None:
    x, y = _rows()
    model, results = guard_results(
        lambda: build_model(architecture, SHAPE, 10, width=4, seed=3), x, y, 10,
        max_parameters=100_000, weight_decay=5e-4)
    assert [r.guard for r in results] == GUARDS and all(r.passed for r in results), results
    assert model is not None and not model.training


def test_a_good_owner_factory_is_admitted_and_seeded() -> None:
    rng_before = torch.random.get_rng_state()
    a = _admit("small_cnn", "tests.owner_architectures:small_cnn")
    b = build_registered("tests.owner_architectures:small_cnn", SHAPE, 10, seed=3)
    c = build_registered("tests.owner_architectures:small_cnn", SHAPE, 10, seed=4)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # fork_rng: caller untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert not a.training


@pytest.mark.parametrize(("factory", "guard", "message"), [
    ("with_dropout", "supported layers", r"Dropout.*random"),
    ("noisy_forward", "determinism", "different gradients"),
    ("unseeded_init", "reproducible initialisation", r"0\.weight differs"),
    ("wide", "parameter count", r"76,810 trainable parameters, more than the limit of 10,000"),
    ("wrong_output", "output shape", r"\(32, 11\), expected \(32, 10\)"),
    ("not_a_module", "build", "returned a dict, not a torch.nn.Module"),
    ("NOT_CALLABLE", "build", "not a callable factory"),
    ("missing", "build", "cannot import 'tests.owner_architectures:missing'.*AttributeError"),
])
def test_each_bad_factory_is_refused_by_its_guard(factory: str, guard: str, message: str) -> None:
    with pytest.raises(ArchitectureRefused, match=message) as info:
        _admit(factory, f"tests.owner_architectures:{factory}", max_parameters=10_000)
    assert info.value.guard == guard
    assert str(info.value).startswith(f"architecture {factory!r} refused by the {guard} guard: ")


def test_an_unimportable_module_is_refused_by_the_build_guard() -> None:
    with pytest.raises(ArchitectureRefused, match="ModuleNotFoundError") as info:
        _admit("ghost", "tests.no_such_module:factory")
    assert info.value.guard == "build"
    with pytest.raises(ImportError, match="no_such_module"):
        load_factory("tests.no_such_module:factory")


def test_too_many_parameters_for_a_builtin() -> None:
    with pytest.raises(ArchitectureRefused, match="parameter count guard: ModelShapeError: the model has 44,550"):
        _admit("resnet18", None, max_parameters=40_000)


def test_guards_leave_batchnorm_buffers_bitwise_unchanged() -> None:
    model = _admit("resnet18", None)
    with torch.no_grad():  # non-trivial statistics, so that a change would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _rows()
    _, results = guard_results(lambda: model, x, y, 10, max_parameters=100_000,
                               weight_decay=5e-4)
    failed = [r for r in results if not r.passed]
    # the second "build" returns the same object, so only the guards that see data matter here
    assert not failed, failed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
