"""Certifiable training: Adam with weight decay and projection onto the C-ball ([Z24] §3).

The objective is L(w; D) = mean cross-entropy over D + (wd/2)·‖w‖² (METHOD §1). torch's Adam with
``weight_decay=wd`` adds wd·w to each gradient, which is exactly the gradient of (wd/2)·‖w‖², so
the optimiser follows this objective. After every step all trainable parameters are projected
jointly onto {‖w‖₂ ≤ C}; the sensitivity bound of METHOD §5 relies on every model, trained or
retrained, lying in that ball. The same :func:`train` serves retraining on a retain set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from app.unlearning.guards import check_finite
from app.unlearning.params import flatten_params

__all__ = [
    "TrainResult",
    "TrainingRecipe",
    "accuracy",
    "full_gradient",
    "project_to_ball_",
    "train",
]


@dataclass(frozen=True)
class TrainingRecipe:
    """Hyper-parameters of certifiable training; defaults are the paper's ([Z24] §5, code).

    Attributes:
        epochs: Passes over the training set.
        lr: Adam learning rate.
        weight_decay: wd in the objective's (wd/2)·‖w‖² term.
        batch_size: Mini-batch size (the last batch of an epoch may be smaller).
        radius: C, the ℓ2 radius that all trainable parameters are jointly projected into.
        seed: Seed of the mini-batch order (initialisation is seeded separately by the builder).
    """

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 128
    radius: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        params: ``Tensor [p]`` final trainable weights, flattened (``params.flatten_params`` order).
        final_grad_norm: ‖∇L(w; S)‖₂ over the whole training set S, a convergence diagnostic
            (METHOD §2; the method does not assume it is zero).
        epochs: Epochs run.
        steps: Optimizer steps taken.
        elapsed_s: Wall time of the training loop, seconds (excludes the final gradient).
        seed: Mini-batch order seed.
    """

    params: torch.Tensor
    final_grad_norm: float
    epochs: int
    steps: int
    elapsed_s: float
    seed: int


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def project_to_ball_(params: list[torch.Tensor], radius: float) -> None:
    """Project parameters jointly onto {‖w‖₂ ≤ radius}, in place.

    Scales by min(1, C/‖w‖). Branch-free (no host sync); a factor of exactly 1 leaves the
    parameters bitwise unchanged.

    Args:
        params: The tensors forming w.
        radius: C > 0.
    """
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
    scale = (radius / norm).clamp(max=1.0)
    torch._foreach_mul_(params, scale)


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() < 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"expected x [n, ...] and y [n], got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("cannot train or evaluate on an empty set")
    if y.dtype != torch.int64:
        raise ValueError(f"labels must be int64, got {y.dtype}")


def full_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    *,
    chunk: int = 8192,
) -> torch.Tensor:
    """∇L(w; S) of the mean cross-entropy + (wd/2)·‖w‖², summed exactly over all of S in chunks.

    Evaluated in eval mode (METHOD §2: curvature and gradients in eval mode); the model's mode and
    its parameters' ``.grad`` are restored/untouched.

    Args:
        model: The model at w.
        x: ``Tensor [n, d]`` inputs of S.
        y: ``Tensor [n]`` int64 labels.
        weight_decay: wd.
        chunk: Rows per forward pass (memory only; the result is the same).

    Returns:
        ``Tensor [p]`` in ``flatten_params`` order.
    """
    _check_data(x, y)
    params = _trainable(model)
    n = x.shape[0]
    total = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            # Sum-reduced then divided by n: the exact mean over S however it is chunked.
            loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
            grads = torch.autograd.grad(loss, params)
            torch._foreach_add_(total, grads)
    finally:
        model.train(was_training)
    with torch.no_grad():
        torch._foreach_add_(total, [p.detach() for p in params], alpha=weight_decay)
    return torch.cat([g.reshape(-1) for g in total])


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: TrainingRecipe,
    *,
    progress: Callable[[float], None] | None = None,
    num_threads: int | None = 1,
) -> TrainResult:
    """Train ``model`` in place by projected Adam on L(w; S) = mean CE + (wd/2)·‖w‖².

    Each epoch visits S in the order of ``torch.randperm`` from a generator seeded with
    ``recipe.seed`` (one generator for the whole run), in mini-batches of ``recipe.batch_size``.
    After every optimizer step, and once before the first, w is projected onto the C-ball
    ([Z24] §3; METHOD §2). The model runs in eval mode throughout (BatchNorm with its frozen
    running statistics; buffers are never updated), and is left in its previous mode. Same model initialisation, data and recipe give bitwise-identical
    weights on the same machine and thread count.

    Args:
        model: Freshly initialised model (e.g. from ``build_model``); trained in place.
        x: ``Tensor [n, d]`` float inputs of the training set S (D, or a retain set D_r).
        y: ``Tensor [n]`` int64 labels.
        recipe: The training recipe.
        progress: Called with the completed fraction in (0, 1] once after each epoch.
        num_threads: torch intra-op CPU threads while training, restored afterwards; ``None``
            keeps the process setting. Default 1: mini-batch products of these models are too
            small to gain from threads, CPU results are then bitwise independent of the core
            count, and OpenMP spin-waiting on a busy 2-core machine made 2-thread training
            50x slower in measurement.

    Returns:
        :class:`TrainResult` with the final flat weights and ‖∇L(w; S)‖.

    Raises:
        ValueError: On malformed data.
        NonFiniteError: If the weights become NaN/Inf (checked once per epoch).
    """
    _check_data(x, y)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train(model, x, y, recipe, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: TrainingRecipe,
    progress: Callable[[float], None] | None,
) -> TrainResult:
    n = x.shape[0]
    params = _trainable(model)
    optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    generator = torch.Generator(device="cpu").manual_seed(recipe.seed)
    steps = 0

    was_training = model.training
    # Eval mode while training too: the supported layers differ between modes only in BatchNorm,
    # whose batch statistics would couple the samples of a batch and feed data into its buffers.
    # In eval mode the trained objective is the certified one (METHOD §2; app.unlearning.convnets).
    model.eval()
    start_time = time.perf_counter()
    try:
        project_to_ball_(params, recipe.radius)  # w_0 in the ball too: even 0 epochs certifiable
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=generator).to(x.device)
            for start in range(0, n, recipe.batch_size):
                idx = order[start : start + recipe.batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                project_to_ball_(params, recipe.radius)
                steps += 1
            check_finite("params", torch.stack(torch._foreach_norm(params)))
            if progress is not None:
                progress((epoch + 1) / recipe.epochs)
    finally:
        model.train(was_training)
    elapsed_s = time.perf_counter() - start_time

    grad = full_gradient(model, x, y, recipe.weight_decay)
    return TrainResult(
        params=flatten_params(model),
        final_grad_norm=float(torch.linalg.vector_norm(grad)),
        epochs=recipe.epochs,
        steps=steps,
        elapsed_s=elapsed_s,
        seed=recipe.seed,
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> float:
    """Fraction of rows whose arg-max logit equals the label (eval mode, no grad).

    Args:
        model: Classifier producing logits ``[b, k]``.
        x: ``Tensor [n, d]``.
        y: ``Tensor [n]`` int64 labels.
        chunk: Rows per forward pass.

    Returns:
        Accuracy in [0, 1] (= micro-F1 for single-label classes, [Z24] §5).

    Raises:
        ValueError: On malformed or empty data.
    """
    _check_data(x, y)
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for start in range(0, x.shape[0], chunk):
            logits = model(x[start : start + chunk])
            correct += int((logits.argmax(dim=1) == y[start : start + chunk]).sum())
    finally:
        model.train(was_training)
    return correct / x.shape[0]
