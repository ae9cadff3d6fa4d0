"""Which architectures a model may name: the built-in ones and those an operator registered.

An operator registers an architecture of their own by a dotted path ``package.module:factory``,
either in the ``LETHE_ARCHITECTURES`` setting (a JSON mapping name → dotted path) or as an entry
point of the group ``lethe.architectures`` in an installed distribution; the setting wins on a
name clash. A factory is called as ``factory(input_shape, num_classes)`` and returns an
``nn.Module`` mapping flattened rows ``[n, prod(input_shape)]`` to logits ``[n, num_classes]``
(:mod:`app.unlearning.admission` seeds the global RNG around the call and runs the guards).

Torch-free: the API process validates names here without importing any factory (reading entry
points reads package metadata only); the worker imports and checks the factory.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points

from app.errors import InvalidInput
from app.settings import get_settings

__all__ = [
    "BUILTIN_ARCHITECTURES",
    "ENTRY_POINT_GROUP",
    "IMAGE_ARCHITECTURES",
    "architecture_choices",
    "check_architecture_name",
    "check_input_shape",
    "registered_architectures",
]

BUILTIN_ARCHITECTURES: tuple[str, ...] = ("mlp", "logreg", "allcnn", "resnet18")
"""The same names as ``app.unlearning.architectures.ARCHITECTURES`` (a test keeps them equal)."""

IMAGE_ARCHITECTURES: tuple[str, ...] = ("allcnn", "resnet18")
"""Built-ins that need image rows ``(C, H, W)`` of at least 4x4 pixels (app.unlearning.convnets)."""

ENTRY_POINT_GROUP = "lethe.architectures"
"""Entry-point group of installed owner architectures (``name = "package.module:factory"``)."""

_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def registered_architectures() -> dict[str, str]:
    """Owner-registered architectures, name → ``package.module:factory``.

    Entry points of :data:`ENTRY_POINT_GROUP` first, then ``LETHE_ARCHITECTURES`` (which wins).

    Raises:
        InvalidInput: A registration shadows a built-in name or its target is not a dotted path
            ``package.module:attribute`` (an operator's mistake, named with the registration).
    """
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update(get_settings().architectures)
    for name, target in found.items():
        if name in BUILTIN_ARCHITECTURES:
            raise InvalidInput(
                f"registered architecture {name!r} shadows a built-in one; rename it",
                field="architecture",
            )
        if not _DOTTED.fullmatch(target):
            raise InvalidInput(
                f"registered architecture {name!r} points at {target!r}, which is not "
                "'package.module:factory'",
                field="architecture",
            )
    return found


def architecture_choices() -> list[str]:
    """Every name a model may use: the built-ins, then the registered ones sorted."""
    return [*BUILTIN_ARCHITECTURES, *sorted(registered_architectures())]


def check_architecture_name(name: str) -> str | None:
    """Accept a built-in or registered architecture name.

    Args:
        name: The model's ``architecture``.

    Returns:
        ``None`` for a built-in, the dotted path of a registered one.

    Raises:
        InvalidInput: Unknown name (the message lists the choices; answered as 422).
    """
    if name in BUILTIN_ARCHITECTURES:
        return None
    registered = registered_architectures()
    if name not in registered:
        raise InvalidInput(
            f"unknown architecture {name!r}; choose one of {', '.join(architecture_choices())}",
            field="architecture",
            choices=architecture_choices(),
        )
    return registered[name]


def check_input_shape(name: str, input_shape: list[int] | tuple[int, ...]) -> None:
    """Refuse a convolutional built-in on a dataset whose samples are not images of ≥ 4x4 pixels.

    A registered architecture's fit is checked by the worker's ``output shape`` guard instead
    (its requirements are not known without importing it).

    Raises:
        InvalidInput: Naming the architecture and the dataset's input shape (422).
    """
    shape = list(input_shape)
    if name in IMAGE_ARCHITECTURES and (len(shape) != 3 or min(shape[1:]) < 4):
        raise InvalidInput(
            f"architecture {name!r} needs image samples (C, H, W) of at least 4x4 pixels; the "
            f"dataset's samples have shape {shape}",
            field="architecture",
        )
