"""Guards of issue 3 §4 at the worker's compute layer: each makes a job raise a clear error
(the engine stores any exception as the job's error and publishes nothing), and automatic
damping records estimated constants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from app.schemas.models import CertificationSpec, TrainingSpec
from app.services import compute
from app.unlearning.datasets import load_builtin
from app.unlearning.guards import NondeterministicModelError, UnsupportedModelError
from app.unlearning.solvers import SolverDivergedError


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_builtin("digits", Path(tmp_path_factory.mktemp("data")))


def _training(**kw: object) -> dict:
    return TrainingSpec(epochs=2, hidden=[8], **kw).model_dump()


def _trained(digits) -> tuple[nn.Module, torch.Tensor, dict]:  # type: ignore[no-untyped-def]
    training = _training()
    model, outcome = compute.train_on("mlp", digits, training, np.arange(digits.n_train))
    return model, outcome.params, training


def test_diverging_solver_fails_the_unlearning_job(digits) -> None:  # type: ignore[no-untyped-def]
    model, w, training = _trained(digits)
    # S far below ‖H_B + λI‖/2: the Neumann series blows up and the guard stops it.
    cert = CertificationSpec(solver="lissa", depth=200, scale=1e-3).model_dump()
    with pytest.raises(SolverDivergedError, match="damping"):
        compute.unlearn_on(model, digits, w, np.arange(10, digits.n_train), np.arange(10),
                           "mlp", training, cert)


def test_nan_weights_fail_the_unlearning_job(digits) -> None:  # type: ignore[no-untyped-def]
    model, w, training = _trained(digits)
    w = w.clone()
    w[0] = float("nan")
    cert = CertificationSpec(solver="cg").model_dump()
    with pytest.raises((SolverDivergedError, ArithmeticError)):
        compute.unlearn_on(model, digits, w, np.arange(10, digits.n_train), np.arange(10),
                           "mlp", training, cert)


def test_nondeterministic_model_fails_training(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def dropout_model(*args: object, **kwargs: object) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 8), nn.Dropout(0.5), nn.Linear(8, 10)).train()

    monkeypatch.setattr(compute, "build_model", dropout_model)
    monkeypatch.setattr(compute, "check_supported_layers", lambda model: None)
    with pytest.raises(NondeterministicModelError, match="deterministic"):
        compute.train_on("mlp", digits, _training(), np.arange(digits.n_train))


def test_unsupported_layer_fails_training_and_unlearning(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def tanh_model(*args: object, **kwargs: object) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10))

    monkeypatch.setattr(compute, "build_model", tanh_model)
    with pytest.raises(UnsupportedModelError, match="Tanh"):
        compute.train_on("mlp", digits, _training(), np.arange(digits.n_train))
    # The unlearning path rebuilds its model with new_model, which runs the same guard.
    with pytest.raises(UnsupportedModelError, match="Tanh"):
        compute.new_model("mlp", digits, _training())


def test_auto_damping_estimates_constants_and_raises_damping(digits) -> None:  # type: ignore[no-untyped-def]
    model, w, training = _trained(digits)
    cert = CertificationSpec(solver="cg", damping=1e-4, auto_damping=True).model_dump()
    outcome = compute.unlearn_on(model, digits, w, np.arange(10, digits.n_train), np.arange(10),
                                 "mlp", training, cert)
    lam_min = outcome.constants["lambda_min"]
    assert lam_min.provenance == "estimated" and "Lanczos" in lam_min.method
    assert lam_min.iterations and lam_min.residual is not None
    assert outcome.constants["hessian_bound"].provenance == "estimated"
    used = outcome.step.ihvp.diagnostics["damping"]
    assert used == pytest.approx(max(1e-4, -lam_min.value + compute.AUTO_DAMPING_MARGIN))
    assert used + lam_min.value > 0
