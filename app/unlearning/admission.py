"""Admitting a model: build it (built-in or owner-registered) and run every guard on it.

The guards, in order, each named in a refusal:

1. ``build``: the factory imports and returns an ``nn.Module`` (an owner's factory is called as
   ``factory(input_shape, num_classes)`` inside ``torch.random.fork_rng`` with the global RNG
   seeded from the recipe's seed, so default-initialised layers are reproducible);
2. ``supported layers``: :func:`~app.unlearning.guards.check_supported_layers` (exact types);
3. ``parameter count``: at most ``max_parameters`` trainable parameters, all float32;
4. ``output shape``: logits ``[n, num_classes]`` on flattened rows of the dataset;
5. ``reproducible initialisation``: a second build from the same seed has bitwise the same
   parameters and buffers (an exact retrain must start from the same w_0, METHOD §2);
6. ``determinism``: two identical forward/backward passes in eval mode give bitwise the same
   gradient (:func:`~app.unlearning.guards.check_determinism`), and leave the buffers unchanged.

Sources: METHOD §2 (no dropout, BatchNorm in eval mode, the determinism check); [Z24] §3.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from app.unlearning.architectures import build_model
from app.unlearning.guards import (
    check_determinism,
    check_output_shape,
    check_parameter_count,
    check_supported_layers,
)

__all__ = [
    "ArchitectureRefused",
    "GuardResult",
    "admit_model",
    "build_registered",
    "guard_results",
    "load_factory",
]

Builder = Callable[[], nn.Module]


class ArchitectureRefused(ValueError):
    """A model failed one of the admission guards; ``guard`` names which."""

    def __init__(self, architecture: str, guard: str, detail: str) -> None:
        super().__init__(f"architecture {architecture!r} refused by the {guard} guard: {detail}")
        self.architecture = architecture
        self.guard = guard
        self.detail = detail


@dataclass(frozen=True)
class GuardResult:
    """One guard's verdict: ``guard`` name, ``passed``, and what it found (``detail``)."""

    guard: str
    passed: bool
    detail: str


def load_factory(target: str) -> Callable[..., nn.Module]:
    """Import ``package.module:factory`` and return the callable.

    Raises:
        ImportError: The module cannot be imported or has no such attribute, or it is not
            callable (the original error is chained and named).
    """
    module_name, _, attr_path = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # an owner's module may raise anything at import time
        raise ImportError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise ImportError(f"{target!r} is a {type(obj).__name__}, not a callable factory")
    return obj  # type: ignore[return-value]


def build_registered(
    target: str, input_shape: tuple[int, ...], num_classes: int, *, seed: int
) -> nn.Module:
    """Build an owner-registered model: ``factory(input_shape, num_classes)``, seeded, eval mode.

    The factory runs inside ``torch.random.fork_rng`` with ``torch.manual_seed(seed)``, so layers
    that draw their initialisation from the global RNG are reproducible and the caller's RNG
    state is untouched.

    Args:
        target: ``package.module:factory``.
        input_shape: Shape of one sample, e.g. ``(1, 8, 8)``; rows arrive flattened.
        num_classes: Logits per sample.
        seed: The recipe's seed.

    Returns:
        The module, float32 on the CPU, in eval mode.

    Raises:
        ImportError: See :func:`load_factory`.
        TypeError: The factory raised, or returned something that is not an ``nn.Module``.
    """
    factory = load_factory(target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(tuple(input_shape), int(num_classes))
        except Exception as exc:  # the owner's code
            raise TypeError(f"{target}({tuple(input_shape)}, {num_classes}) raised "
                            f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise TypeError(f"{target} returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _same_tensors(a: nn.Module, b: nn.Module) -> str | None:
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb):
        return "the two builds have different parameter and buffer names"
    for name, ta in sa.items():
        if ta.shape != sb[name].shape or not torch.equal(ta, sb[name]):
            return f"{name} differs between two builds from the same seed"
    return None


def _buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b.detach().clone() for b in model.buffers()]


def guard_results(
    build: Builder,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    max_parameters: int,
    weight_decay: float,
) -> tuple[nn.Module | None, list[GuardResult]]:
    """Run the admission guards in order, stopping at the first failure.

    Args:
        build: Builds the model afresh from the recipe's seed (called twice).
        x: ``Tensor [b, d]`` a few flattened rows of the dataset (b ≈ 32).
        y: ``LongTensor [b]`` their labels.
        num_classes: The dataset's classes.
        max_parameters: The limit of the parameter-count guard.
        weight_decay: wd of the recipe (for the determinism guard's objective).

    Returns:
        ``(model, results)``: the built model (``None`` if it could not be built) and one
        :class:`GuardResult` per guard run; the last one failed if any did.
    """
    results: list[GuardResult] = []

    def run(guard: str, check: Callable[[], str]) -> bool:
        try:
            detail = check()
        except Exception as exc:  # every guard failure is reported, never raised from here
            results.append(GuardResult(guard, False, f"{type(exc).__name__}: {exc}"))
            return False
        results.append(GuardResult(guard, True, detail))
        return True

    holder: list[nn.Module] = []

    def built() -> str:
        holder.append(build())
        return type(holder[0]).__name__

    if not run("build", built):
        return None, results
    model = holder[0]

    def layers() -> str:
        check_supported_layers(model)
        return "every module is of a supported type"

    def count() -> str:
        p = check_parameter_count(model, max_parameters)
        wrong = sorted({str(t.dtype) for t in model.parameters() if t.dtype != torch.float32})
        if wrong:
            raise TypeError(f"parameters must be float32, found {', '.join(wrong)}")
        return f"{p:,} trainable parameters (limit {max_parameters:,})"

    def output() -> str:
        check_output_shape(model, x, num_classes)
        return f"logits [{x.shape[0]}, {num_classes}]"

    def reproducible() -> str:
        why = _same_tensors(model, build())
        if why is not None:
            raise ValueError(why + "; the factory must draw its initialisation from torch's "
                             "global RNG or a generator seeded by it")
        return "a second build from the same seed is bitwise identical"

    def deterministic() -> str:
        before = _buffers(model)
        model.eval()
        check_determinism(model, x, y, weight_decay)
        if any(not torch.equal(a, b) for a, b in zip(before, _buffers(model), strict=True)):
            raise ValueError("a forward pass in eval mode changed the model's buffers")
        return "two forward/backward passes in eval mode agree bitwise"

    for guard, check in (("supported layers", layers), ("parameter count", count),
                         ("output shape", output), ("reproducible initialisation", reproducible),
                         ("determinism", deterministic)):
        if not run(guard, check):
            break
    return model, results


def admit_model(
    architecture: str,
    target: str | None,
    input_shape: tuple[int, ...],
    num_classes: int,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    max_parameters: int,
    weight_decay: float,
    hidden: tuple[int, ...] = (32, 32),
    width: int | None = None,
) -> nn.Module:
    """Build the model of a spec and run every guard; return it in eval mode or refuse it.

    Args:
        architecture: A built-in name or a registered one.
        target: ``package.module:factory`` of a registered architecture, ``None`` for a built-in.
        input_shape: Shape of one sample.
        num_classes: Logits per sample.
        x: ``Tensor [b, d]`` a few flattened training rows; y: ``LongTensor [b]`` their labels.
        seed: Initialisation seed.
        max_parameters: ``LETHE_MAX_PARAMETERS``.
        weight_decay: wd of the recipe.
        hidden: MLP widths (built-ins only).
        width: Convolutional base width (built-ins only; ``None`` = the paper's).

    Returns:
        The freshly initialised model, in eval mode.

    Raises:
        ArchitectureRefused: Naming the failed guard and why.
    """

    def build() -> nn.Module:
        if target is None:
            return build_model(architecture, input_shape, num_classes, hidden=hidden,
                               width=width, seed=seed)
        return build_registered(target, input_shape, num_classes, seed=seed)

    model, results = guard_results(build, x, y, num_classes, max_parameters=max_parameters,
                                   weight_decay=weight_decay)
    failed = next((r for r in results if not r.passed), None)
    if failed is not None or model is None:
        assert failed is not None
        raise ArchitectureRefused(architecture, failed.guard, failed.detail)
    return model
