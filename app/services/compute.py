"""The torch side of a job: train, unlearn one batch, retrain (worker process only).

Pure computation on arrays and flat parameter vectors; no database here. The engine reads the
world, calls these, and publishes the results. Imported only by the worker: the API process never
loads torch.

Device: every function takes the worker's ``device`` (``app.unlearning.device``; CPU by default).
The dataset's arrays are moved there once per job, the model is built there, and training,
curvature products, solves and noise all run there; :func:`weights_file` brings the results back
to the host for the safetensors file. The curvature of an unlearning step is taken in
``certification["curvature_dtype"]`` (float32 by default; float64 for small models, on a copy of
the model), and its results are cast back to the model's float32.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from app.services.architectures import check_architecture_name
from app.settings import get_settings
from app.unlearning.admission import admit_model
from app.unlearning.bounds import Constant, Sensitivity, certified_sensitivity
from app.unlearning.calibration import analytic_epsilon, analytic_sigma, classical_epsilon
from app.unlearning.datasets import ArrayDataset, load_builtin
from app.unlearning.hvp import RetainSetCurvature
from app.unlearning.guards import check_determinism, check_finite
from app.unlearning.newton import NewtonStepResult, unlearn_step
from app.unlearning.objective import Objective
from app.unlearning.params import flatten_params, load_flat_params, unflatten
from app.unlearning.release import noisy_release
from app.unlearning.spectrum import auto_damping, lanczos_lambda_min, power_norm
from app.unlearning.training import TrainingRecipe, accuracy, train
from app.unlearning.uploads import load_uploaded

Progress = Callable[[float], None]


@lru_cache(maxsize=4)
def load_dataset(source: str, data_dir: str) -> ArrayDataset:
    """Built-in dataset, cached per worker process (a worker serves many jobs)."""
    return load_builtin(source, Path(data_dir))


@lru_cache(maxsize=4)
def load_uploaded_dataset(path: str, checksum_sha256: str) -> ArrayDataset:
    """An uploaded dataset (:func:`app.unlearning.uploads.load_uploaded`: checked against its
    checksum, flattened to ``[n, d]``), cached per worker process like the built-ins."""
    return load_uploaded(Path(path), checksum_sha256)


CPU = torch.device("cpu")
CURVATURE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
"""``certification["curvature_dtype"]`` → the dtype of the Newton step's curvature products."""


def tensors(data: ArrayDataset, device: torch.device = CPU
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train [n, d]``, ``y_train [n]``, ``x_test``, ``y_test`` as tensors on ``device``."""
    return (torch.from_numpy(np.ascontiguousarray(data.x_train)).to(device),
            torch.from_numpy(data.y_train).to(device),
            torch.from_numpy(np.ascontiguousarray(data.x_test)).to(device),
            torch.from_numpy(data.y_test).to(device))


def recipe_from(training: dict[str, Any]) -> TrainingRecipe:
    return TrainingRecipe(epochs=int(training["epochs"]), lr=float(training["lr"]),
                          weight_decay=float(training["weight_decay"]),
                          batch_size=int(training["batch_size"]), radius=float(training["radius"]),
                          seed=int(training["seed"]))


GUARD_ROWS = 32
"""Training rows the admission guards evaluate the model on (output shape, determinism)."""


def new_model(architecture: str, data: ArrayDataset, training: dict[str, Any],
              device: torch.device = CPU) -> torch.nn.Module:
    """The model of a spec, initialised from the recipe's seed (on the host, so its weights do not
    depend on the device), admitted by every guard of :mod:`app.unlearning.admission` (METHOD §2),
    then moved to ``device``, in eval mode.

    ``architecture`` is a built-in name or one registered by the operator
    (:mod:`app.services.architectures`); ``training["width"]`` sizes a convolutional network.

    Raises:
        ArchitectureRefused: Naming the guard the model fails (the job fails with that message).
        InvalidInput: The name is not registered (any more) in this worker's settings.
    """
    settings = get_settings()
    target = check_architecture_name(architecture)
    x = torch.from_numpy(np.array(data.x_train[:GUARD_ROWS]))
    y = torch.from_numpy(np.array(data.y_train[:GUARD_ROWS]))
    width = training.get("width")
    model = admit_model(architecture, target, tuple(data.input_shape), data.num_classes,
                        x, y, seed=int(training["seed"]),
                        max_parameters=settings.max_parameters,
                        weight_decay=float(training["weight_decay"]),
                        hidden=tuple(training.get("hidden", (32, 32))),
                        width=None if width is None else int(width))
    model = model.to(device)
    if device.type != "cpu":
        # The admission guards ran on the host; the device's kernels are other code, so the
        # determinism guard is repeated where the job computes (METHOD §2).
        check_determinism(model, x.to(device), y.to(device), float(training["weight_decay"]))
    return model


def weights_file(model: torch.nn.Module, params: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """Serialize flat ``params`` [p] (on any device) as a host safetensors file with the model's
    parameter names, plus its persistent buffers (BatchNorm running statistics).

    The buffers are not part of w: Lethe never updates them from data (BatchNorm runs in eval mode
    with the statistics it was initialised with, :mod:`app.unlearning.convnets`), so they carry
    no sample's information and are released without noise; they make the file loadable with
    ``load_state_dict``."""
    named = {name: t.detach().to(CPU).contiguous().clone()
             for name, t in unflatten(model, params).items()}
    params_names = {name for name, _ in model.named_parameters()}
    named.update({name: t.detach().to(CPU).contiguous().clone()
                  for name, t in model.state_dict().items() if name not in params_names})
    return save_safetensors(named, metadata=metadata)


def params_from_file(model: torch.nn.Module, data: bytes) -> torch.Tensor:
    """Inverse of :func:`weights_file`: flat params [p] in ``model.named_parameters()`` order, on
    the model's device."""
    named = load_safetensors(data)
    device = next(model.parameters()).device
    return torch.cat([named[name].reshape(-1) for name, _ in model.named_parameters()]).to(device)


def evaluate(model: torch.nn.Module, params: torch.Tensor,
             splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float | None]:
    """Accuracy (= micro-F1 for single-label classes, [Z24] §5) of ``params`` on each split."""
    load_flat_params(model, params)
    return {name: (accuracy(model, x, y) if len(y) else None) for name, (x, y) in splits.items()}


@dataclass(frozen=True)
class TrainOutcome:
    params: torch.Tensor
    final_grad_norm: float
    elapsed_s: float
    accuracy: dict[str, float | None]
    retain_size: int


def train_on(architecture: str, data: ArrayDataset, training: dict[str, Any],
             retain_index: np.ndarray, progress: Progress | None = None,
             device: torch.device = CPU) -> tuple[torch.nn.Module, TrainOutcome]:
    """Certifiable training (METHOD §2) on the rows ``retain_index`` of the train split.

    Used for version 0 (all rows) and for an exact retrain (D_r), with the same recipe and seed.
    The model, its data and the returned ``params`` [p] are on ``device``.
    """
    x, y, x_test, y_test = tensors(data, device)
    model = new_model(architecture, data, training, device)
    recipe = recipe_from(training)
    idx = torch.from_numpy(retain_index).to(device)
    x_r, y_r = x[idx], y[idx]
    result = train(model, x_r, y_r, recipe, progress=progress)
    check_finite("trained parameters", result.params)
    acc = evaluate(model, result.params, {"retain": (x_r, y_r), "test": (x_test, y_test)})
    return model, TrainOutcome(result.params, result.final_grad_norm, result.elapsed_s, acc,
                               len(retain_index))


def declared_constants(architecture: str, certification: dict[str, Any],
                       weight_decay: float) -> dict[str, Constant]:
    """Constants of METHOD §5 with provenance. Undeclared ones are ``unknown`` (never guessed).

    For ``logreg`` the objective is convex plus (wd/2)‖w‖², so λ_min(H) ≥ wd is *derived*.
    """
    declared = certification.get("constants") or {}
    names = ("lipschitz_hessian", "hessian_bound", "lambda_min", "gradient_bound")
    out = {n: (Constant(float(declared[n]), "declared", "model owner")
               if declared.get(n) is not None else Constant(None, "unknown", "not declared"))
           for n in names}
    if architecture == "logreg" and declared.get("lambda_min") is None:
        out["lambda_min"] = Constant(weight_decay, "derived",
                                     "convex cross-entropy + (wd/2)||w||^2 => H >= wd*I")
    return out


AUTO_DAMPING_MARGIN = 1e-2
"""The margin of automatic damping λ = max(λ, −λ_min + margin) (METHOD §5)."""


def estimated_constants(objective: Objective, x_r: torch.Tensor, y_r: torch.Tensor,
                        w_k: torch.Tensor, constants: dict[str, Constant], chunk_size: int,
                        lanczos_steps: int = 40, power_iterations: int = 30) -> dict[str, Constant]:
    """Fill the undeclared λ_min and L (= ‖H‖ bound) with estimates on the retain set at w_k.

    λ_min: Lanczos lower bound θ − ‖Hu − θu‖ (:func:`lanczos_lambda_min`); L: power iteration
    × 1.1 (:func:`power_norm`). Declared (or derived) values are kept: the owner's word wins.
    """
    out = dict(constants)
    curvature = RetainSetCurvature(objective, x_r, y_r, chunk_size=chunk_size)
    if out["lambda_min"].provenance == "unknown":
        eig = lanczos_lambda_min(curvature, w_k, steps=lanczos_steps)
        out["lambda_min"] = Constant(eig.lower_bound, "estimated", eig.method,
                                     iterations=eig.iterations, residual=eig.residual)
    if out["hessian_bound"].provenance == "unknown":
        est = power_norm(curvature, w_k, iterations=power_iterations)
        out["hessian_bound"] = Constant(est.bound, "estimated", est.method,
                                        iterations=est.iterations, residual=est.residual)
    return out


@dataclass(frozen=True)
class UnlearnOutcome:
    internal: torch.Tensor
    released: torch.Tensor
    step: NewtonStepResult
    sensitivity: Sensitivity
    constants: dict[str, Constant]
    noise_std: float
    epsilon: float
    delta: float
    certified_delta: float
    classical: dict[str, Any]
    accuracy: dict[str, float | None]
    minibatch_seed: int
    elapsed_s: dict[str, float] = field(default_factory=dict)


def unlearn_on(model: torch.nn.Module, data: ArrayDataset, w_k: torch.Tensor,
               retain_index: np.ndarray, forget_index: np.ndarray, architecture: str,
               training: dict[str, Any], certification: dict[str, Any]) -> UnlearnOutcome:
    """One certified unlearning step (METHOD §3) and its noisy release (§5–6).

    Runs on the device of ``model`` (which ``w_k`` must share); the curvature in
    ``certification["curvature_dtype"]`` (default ``"float32"``).

    Args:
        model: The network (float32), on the worker's device.
        w_k: Tensor [p], the noiseless internal state before this batch.
        retain_index: int64 [n_r], rows of D_r (this batch already removed).
        forget_index: int64 [m], rows of this batch's D_u (for the utility metrics).

    Returns:
        An :class:`UnlearnOutcome`; ``internal`` and ``released`` are float32 on the device.
    """
    started = time.perf_counter()
    device = w_k.device
    x, y, x_test, y_test = tensors(data, device)
    r_idx, u_idx = torch.from_numpy(retain_index).to(device), torch.from_numpy(forget_index).to(device)
    x_r, y_r = x[r_idx], y[r_idx]
    dtype = CURVATURE_DTYPES[certification.get("curvature_dtype", "float32")]
    # The step's curvature in the chosen dtype; a float64 copy leaves the float32 model as it is.
    step_model = model if dtype == w_k.dtype else copy.deepcopy(model).to(dtype)
    w_step, x_step = w_k.detach().to(dtype), x_r.to(dtype)
    weight_decay, radius = float(training["weight_decay"]), float(training["radius"])
    damping = float(certification["damping"])
    solver = certification["solver"]
    options: dict[str, Any]
    if solver == "lissa":
        options = {"depth": int(certification["depth"]), "repeats": int(certification["repeats"]),
                   "batch_size": int(certification["batch_size"]), "scale": certification["scale"]}
    elif solver == "cg":
        options = {"rtol": float(certification["cg_rtol"]), "max_iter": int(certification["cg_max_iter"])}
    else:
        options = {}
    objective = Objective(step_model, weight_decay)
    constants = declared_constants(architecture, certification, weight_decay)
    if certification.get("auto_damping"):
        # Automatic damping (METHOD §5): estimate what was not declared, then raise λ above
        # −λ_min. The solver's diagnostics record the damping actually used.
        constants = estimated_constants(objective, x_step, y_r, w_step, constants,
                                        int(certification["chunk_size"]))
        lam_min = constants["lambda_min"].value
        if lam_min is not None:
            damping = auto_damping(damping, lam_min, AUTO_DAMPING_MARGIN)
    # LiSSA's minibatch draws need no secrecy (unlike the release noise); the seed is recorded.
    minibatch_seed = secrets.randbits(63)
    step = unlearn_step(objective, w_step, x_step, y_r, damping=damping, radius=radius,
                        solver=solver, solver_options=options,
                        chunk_size=int(certification["chunk_size"]),
                        generator=torch.Generator(device=device).manual_seed(minibatch_seed))
    check_finite("unlearned parameters", step.params_new)
    internal = step.params_new.to(w_k.dtype)

    p = int(w_k.numel())
    rho = float(certification["rho"]) if solver == "lissa" else 0.0
    sens = certified_sensitivity(radius=radius, damping=damping,
                                 lipschitz_hessian=constants["lipschitz_hessian"],
                                 hessian_bound=constants["hessian_bound"],
                                 lambda_min=constants["lambda_min"],
                                 gradient_bound=constants["gradient_bound"], solver=solver,
                                 residual_norm=step.ihvp.residual_norm, p=p, rho=rho)
    delta = float(certification["delta"])
    if certification.get("target_epsilon") is not None:
        epsilon = float(certification["target_epsilon"])
        noise_std = analytic_sigma(sens.total, epsilon, delta)
    else:
        noise_std = float(certification["noise_std"])
        epsilon = analytic_epsilon(sens.total, noise_std, delta) if noise_std > 0 else float("inf")
    classical = classical_epsilon(sens.total, noise_std, delta) if noise_std > 0 else None
    released = noisy_release(internal, noise_std)
    certified_at = time.perf_counter()
    acc = evaluate(model, released, {"forget": (x[u_idx], y[u_idx]), "retain": (x_r, y_r),
                                     "test": (x_test, y_test)})
    elapsed = dict(step.elapsed_s)
    elapsed["certify"] = certified_at - started - sum(step.elapsed_s.values())
    elapsed["unlearn_total"] = certified_at - started
    elapsed["evaluate"] = time.perf_counter() - certified_at
    return UnlearnOutcome(
        internal=internal, released=released, step=step, sensitivity=sens,
        constants=constants, noise_std=noise_std, epsilon=epsilon, delta=delta,
        certified_delta=delta + sens.rho,
        classical=({"epsilon": classical.epsilon, "valid": classical.valid,
                    "label": "classical Gaussian mechanism; valid only for epsilon < 1"}
                   if classical is not None else {}),
        accuracy=acc, minibatch_seed=minibatch_seed, elapsed_s=elapsed)


def forget_accuracy(model: torch.nn.Module, data: ArrayDataset, params: torch.Tensor,
                    index: Sequence[int]) -> float | None:
    """Accuracy of ``params`` [p] on the train rows ``index``, on the device of ``params`` (only
    those rows are moved there)."""
    rows = np.asarray(list(index), dtype=np.int64)
    x = torch.from_numpy(np.ascontiguousarray(data.x_train[rows])).to(params.device)
    y = torch.from_numpy(data.y_train[rows]).to(params.device)
    return evaluate(model, params, {"forget": (x, y)})["forget"]

