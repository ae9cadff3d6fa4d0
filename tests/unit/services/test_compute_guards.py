"""Guards of issue 3 §4 at the worker's compute layer: each makes a job raise a clear error
(the engine stores any exception as the job's error and publishes nothing), and automatic
damping records estimated constants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from app.schemas.models import CertificationSpec, TrainingSpec
from app.services import compute
from app.unlearning.datasets import load_builtin
from app.settings import get_settings
from app.unlearning.admission import ArchitectureRefused
from app.unlearning.solvers import SolverDivergedError


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


@pytest.fixture
def registered(monkeypatch):  # type: ignore[no-untyped-def]
    """Owner architectures from tests/owner_architectures.py, registered by LETHE_ARCHITECTURES."""
    names = {"noisy": "noisy_forward", "dropout": "with_dropout", "cnn": "small_cnn"}
    monkeypatch.setenv("LETHE_ARCHITECTURES", json.dumps(
        {name: f"tests.owner_architectures:{factory}" for name, factory in names.items()}))
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("LETHE_ARCHITECTURES")
    get_settings.cache_clear()


def test_nondeterministic_model_fails_training(digits, registered) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArchitectureRefused, match="determinism guard.*different gradients"):
        compute.train_on("noisy", digits, _training(), np.arange(digits.n_train))


def test_unsupported_layer_fails_training_and_unlearning(digits, registered) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArchitectureRefused, match="supported layers guard.*Dropout"):
        compute.train_on("dropout", digits, _training(), np.arange(digits.n_train))
    # The unlearning path rebuilds its model with new_model, which runs the same guards.
    with pytest.raises(ArchitectureRefused, match="supported layers guard.*Dropout"):
        compute.new_model("dropout", digits, _training())


def test_a_registered_cnn_trains_and_unlearns(digits, registered) -> None:  # type: ignore[no-untyped-def]
    training = _training()
    model, outcome = compute.train_on("cnn", digits, training, np.arange(digits.n_train))
    cert = CertificationSpec(solver="cg", cg_max_iter=20, auto_damping=True).model_dump()
    step = compute.unlearn_on(model, digits, outcome.params, np.arange(10, digits.n_train),
                              np.arange(10), "cnn", training, cert)
    assert step.released.shape == outcome.params.shape


def test_a_convnet_weights_file_holds_its_frozen_batchnorm_buffers(digits) -> None:  # type: ignore[no-untyped-def]
    training = _training(width=2)
    model, outcome = compute.train_on("resnet18", digits, training, np.arange(200))
    data = compute.weights_file(model, outcome.params, {"format": "pt"})
    named = load_safetensors(data)
    buffers = {k for k in model.state_dict() if k not in dict(model.named_parameters())}
    assert buffers and buffers <= set(named)
    # Training ran BatchNorm in eval mode: the statistics are still the initial ones.
    for name in buffers:
        expected = 1.0 if name.endswith("running_var") else 0.0
        assert torch.all(named[name] == expected), name
    assert torch.equal(compute.params_from_file(model, data), outcome.params)
    fresh = compute.new_model("resnet18", digits, training)
    fresh.load_state_dict(named)  # the file is a complete state dict


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
