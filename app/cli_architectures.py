"""``lethe architectures list`` and ``lethe architectures check NAME --dataset SOURCE``.

``check`` builds the architecture on a built-in dataset's shape and runs the worker's admission
guards (:mod:`app.unlearning.admission`), printing each verdict; it exits 1 when one fails, so an
operator can try a registration before any model names it.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

architectures_cli = typer.Typer(
    help="Built-in and owner-registered architectures (LETHE_ARCHITECTURES, entry points "
    "lethe.architectures).", no_args_is_help=True)


@architectures_cli.command("list")
def list_architectures(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Every architecture a model may name, with where a registered one comes from."""
    from app.services.architectures import BUILTIN_ARCHITECTURES, registered_architectures

    rows = {name: "built-in" for name in BUILTIN_ARCHITECTURES}
    rows.update(dict(sorted(registered_architectures().items())))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for name, target in rows.items():
        typer.echo(f"{name:<24} {target}")


@architectures_cli.command("check")
def check_architecture(
    name: Annotated[str, typer.Argument(help="A built-in or registered architecture.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Built-in dataset whose shape to use.")],
    width: Annotated[int | None, typer.Option(min=1, help="Conv base width (built-ins).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Initialisation seed.")] = 0,
    weight_decay: Annotated[float, typer.Option(min=0, help="wd of the recipe.")] = 5e-4,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Build NAME on DATASET's input shape and run every admission guard (exit 1 on a refusal)."""
    import torch

    from app.errors import InvalidInput
    from app.services.architectures import check_architecture_name
    from app.settings import get_settings
    from app.unlearning.admission import build_registered, guard_results
    from app.unlearning.architectures import build_model
    from app.unlearning.datasets import DatasetError, load_builtin

    settings = get_settings()
    try:
        target = check_architecture_name(name)
        data = load_builtin(dataset, settings.resolved_data_dir)
    except (InvalidInput, DatasetError) as exc:
        typer.echo(f"lethe architectures check: {exc}", err=True)
        raise typer.Exit(2) from exc
    shape = tuple(data.input_shape)
    rows = min(32, data.n_train)
    x = torch.from_numpy(data.x_train[:rows].copy())
    y = torch.from_numpy(data.y_train[:rows].copy())

    def build() -> torch.nn.Module:
        if target is None:
            return build_model(name, shape, data.num_classes, width=width, seed=seed)
        return build_registered(target, shape, data.num_classes, seed=seed)

    torch.set_num_threads(settings.worker_threads)
    _, results = guard_results(build, x, y, data.num_classes,
                               max_parameters=settings.max_parameters, weight_decay=weight_decay)
    passed = all(r.passed for r in results)
    if json_out:
        typer.echo(json.dumps({"architecture": name, "target": target or "built-in",
                               "dataset": dataset, "input_shape": list(shape), "passed": passed,
                               "guards": [r.__dict__ for r in results]}, indent=2))
    else:
        typer.echo(f"{name} ({target or 'built-in'}) on {dataset} {shape}:")
        for r in results:
            typer.echo(f"  [{'ok' if r.passed else 'FAIL'}] {r.guard}: {r.detail}")
        typer.echo("admitted" if passed else "refused")
    if not passed:
        raise typer.Exit(1)
