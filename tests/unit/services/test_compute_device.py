"""The compute layer follows the worker's device and the certification's curvature dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.schemas.models import CertificationSpec, TrainingSpec
from app.services import compute
from app.unlearning.datasets import load_builtin


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    digits = load_builtin("digits", Path(tmp_path_factory.mktemp("data")))
    training = TrainingSpec(epochs=3, hidden=[8]).model_dump()
    model, outcome = compute.train_on("mlp", digits, training, np.arange(digits.n_train),
                                      device=torch.device("cpu"))
    return digits, model, outcome.params, training


def _unlearn(trained, dtype: str):  # type: ignore[no-untyped-def]
    digits, model, w, training = trained
    cert = CertificationSpec(solver="exact", noise_std=0.0, curvature_dtype=dtype).model_dump()
    return compute.unlearn_on(model, digits, w, np.arange(20, digits.n_train), np.arange(20),
                              "mlp", training, cert)


def test_float64_curvature_agrees_with_float32_and_returns_float32(trained) -> None:  # type: ignore[no-untyped-def]
    _, model, w, _ = trained
    single, double = _unlearn(trained, "float32"), _unlearn(trained, "float64")
    assert single.step.params_new.dtype == torch.float32
    assert double.step.params_new.dtype == torch.float64  # the step itself ran in float64
    for out in (single, double):
        assert out.internal.dtype == out.released.dtype == torch.float32
        assert torch.equal(out.released, out.internal)  # σ = 0
    # Same step up to float32 rounding of the curvature: the difference is far below the step.
    gap = float(torch.linalg.vector_norm(single.internal.double() - double.internal.double()))
    assert gap < 1e-3 * single.step.step_norm, (gap, single.step.step_norm)
    assert double.step.step_norm > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model is untouched


def test_weights_file_is_host_memory_and_reads_back_on_the_model_device(trained) -> None:  # type: ignore[no-untyped-def]
    _, model, w, _ = trained
    blob = compute.weights_file(model, w, {"format": "pt"})
    back = compute.params_from_file(model, blob)
    assert torch.equal(back, w) and back.device == next(model.parameters()).device


def test_curvature_dtype_is_validated_by_the_schema() -> None:
    from pydantic import ValidationError

    assert CertificationSpec().curvature_dtype == "float32"
    with pytest.raises(ValidationError, match="curvature_dtype"):
        CertificationSpec(curvature_dtype="float16")


def test_forget_accuracy_is_the_accuracy_on_those_rows(trained) -> None:  # type: ignore[no-untyped-def]
    digits, model, w, _ = trained
    rows = [5, 0, 17, 300, 1000]
    compute.load_flat_params(model, w)
    with torch.no_grad():
        predicted = model(torch.from_numpy(digits.x_train[rows])).argmax(dim=1).numpy()
    expected = float((predicted == digits.y_train[rows]).mean())
    assert compute.forget_accuracy(model, digits, w, rows) == expected


def test_the_determinism_guard_is_repeated_on_a_non_cpu_device(trained, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    digits, _, _, training = trained
    seen: list[torch.device] = []
    monkeypatch.setattr(compute, "check_determinism",
                        lambda model, x, y, wd: seen.append(x.device))
    compute.new_model("mlp", digits, training)  # host: the admission guards cover it
    assert seen == []
    # "meta" stands in for a GPU here: any device other than the host gets its own check.
    model = compute.new_model("mlp", digits, training, torch.device("meta"))
    assert seen == [torch.device("meta")] and next(model.parameters()).device.type == "meta"
