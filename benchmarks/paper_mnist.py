"""Reproduce the paper's MLP/MNIST experiment ([Z24] §5, METHOD §9) and measure the product.

One run: train w* (paper recipe), retrain w̃* on D_r from the same initialisation, unlearn the same
forget set with several solvers, release each at σ ∈ {0, 1e-3, 1e-2}, and compare against the
retrained model; then the sequential experiment (rounds of deletions, retrain per round); then the
straightforward reference LiSSA (:mod:`app.unlearning.reference`) against the product's on the same
minibatches. Writes ``<out>/paper_mnist.json``, ``.md`` (also printed) and ``.png``.

Usage: ``python benchmarks/paper_mnist.py [--epochs 50] [--smoke] [--out runs/bench]``.
``--smoke`` runs every part on a tiny slice (a few seconds) so the script cannot rot.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.unlearning.architectures import build_model
from app.unlearning.bounds import Constant, certified_sensitivity
from app.unlearning.calibration import analytic_epsilon
from app.unlearning.datasets import load_builtin
from app.unlearning.hvp import RetainSetCurvature
from app.unlearning.newton import unlearn_step
from app.unlearning.objective import Objective
from app.unlearning.params import load_flat_params
from app.unlearning.reference import lissa_draws, reference_lissa
from app.unlearning.release import noisy_release
from app.unlearning.solvers import RESIDUAL_GUARD, SolverDivergedError, solve_lissa
from app.unlearning.spectrum import (
    auto_damping,
    lanczos_lambda_min,
    minibatch_power_norm,
    power_norm,
)
from app.unlearning.training import TrainingRecipe, accuracy, train
from report_files import write_report

SIGMAS = (0.0, 1e-3, 1e-2)
DELTA = 1e-5
RHO = 1e-3


@dataclass
class Setup:
    model: torch.nn.Module
    objective: Objective
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    recipe: TrainingRecipe
    hidden: tuple[int, ...]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50, help="training epochs (paper: 50)")
    ap.add_argument("--forget", type=int, default=1000, help="|D_u| of the one-batch experiment")
    ap.add_argument("--rounds", type=int, default=10, help="sequential rounds")
    ap.add_argument("--round-size", type=int, default=100, help="deletions per round")
    ap.add_argument("--damping", type=float, default=0.01, help="λ (paper appendix: 0.01)")
    ap.add_argument("--depth", type=int, default=1000, help="paper LiSSA depth s")
    ap.add_argument("--max-depth", type=int, default=20000, help="cap of the bound-driven depth")
    ap.add_argument("--lanczos-steps", type=int, default=40)
    ap.add_argument("--cg-max-iter", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="var/data")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--smoke", action="store_true", help="tiny slice, seconds: checks the script")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.forget, args.rounds, args.round_size = 1, 50, 2, 20
        args.depth, args.max_depth, args.lanczos_steps, args.cg_max_iter = 20, 60, 8, 10
    return args


def norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.to(torch.float64)))


def setup(args: argparse.Namespace) -> Setup:
    data = load_builtin("mnist", Path(args.data_dir))
    x = torch.from_numpy(np.ascontiguousarray(data.x_train))
    y = torch.from_numpy(data.y_train)
    x_test = torch.from_numpy(np.ascontiguousarray(data.x_test))
    y_test = torch.from_numpy(data.y_test)
    hidden = (32, 32)
    if args.smoke:
        x, y, x_test, y_test = x[:2000], y[:2000], x_test[:500], y_test[:500]
    recipe = TrainingRecipe(epochs=args.epochs, seed=args.seed)
    model = build_model("mlp", x.shape[1], data.num_classes, hidden=hidden, seed=args.seed)
    return Setup(model, Objective(model, recipe.weight_decay), x, y, x_test, y_test, recipe, hidden)


def fresh_train(s: Setup, index: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Train from the recipe's initialisation (same seed) on rows ``index``; (params, seconds)."""
    model = build_model("mlp", s.x.shape[1], int(s.y.max()) + 1, hidden=s.hidden,
                        seed=s.recipe.seed)
    t = time.perf_counter()
    result = train(model, s.x[index], s.y[index], s.recipe)
    return result.params, time.perf_counter() - t


def accuracies(s: Setup, w: torch.Tensor, forget: torch.Tensor,
               retain: torch.Tensor) -> dict[str, float]:
    load_flat_params(s.model, w)
    return {"forget": accuracy(s.model, s.x[forget], s.y[forget]),
            "retain": accuracy(s.model, s.x[retain], s.y[retain]),
            "test": accuracy(s.model, s.x_test, s.y_test)}


def certify(constants: dict[str, Constant], damping: float, solver: str,
            residual: float | None, p: int, radius: float) -> tuple[Any, float]:
    t = time.perf_counter()
    sens = certified_sensitivity(
        radius=radius, damping=damping, lipschitz_hessian=constants["lipschitz_hessian"],
        hessian_bound=constants["hessian_bound"], lambda_min=constants["lambda_min"],
        gradient_bound=constants["gradient_bound"], solver=solver, residual_norm=residual, p=p,
        rho=RHO if solver == "lissa" else 0.0)
    for sigma in SIGMAS:
        if sigma > 0:
            analytic_epsilon(sens.total, sigma, DELTA + sens.rho)
    return sens, time.perf_counter() - t


def run_method(s: Setup, name: str, solver: str, damping: float, options: dict[str, Any],
               w_k: torch.Tensor, retain: torch.Tensor, forget: torch.Tensor,
               w_retrain: torch.Tensor, constants: dict[str, Constant], seed: int,
               extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Unlearn once with ``solver``; one row per σ (or one error row)."""
    base: dict[str, Any] = {"method": name, "solver": solver, "damping": damping,
                            "options": {k: v for k, v in options.items() if k != "generator"},
                            **(extra or {})}
    radius = s.recipe.radius
    t0 = time.perf_counter()
    try:
        step = unlearn_step(s.objective, w_k, s.x[retain], s.y[retain], damping=damping,
                            radius=radius, solver=solver, solver_options=options,
                            generator=torch.Generator().manual_seed(seed))
    except SolverDivergedError as err:
        return [{**base, "sigma": None, "time_s": time.perf_counter() - t0, "error": str(err)}]
    sens, cert_s = certify(constants, damping, solver, step.ihvp.residual_norm,
                           int(w_k.numel()), radius)
    step_s = sum(step.elapsed_s.values()) + cert_s
    residual = step.ihvp.residual_norm
    if residual is None:  # measured outside the timed step, for the report only
        cur = RetainSetCurvature(s.objective, s.x[retain], s.y[retain])
        g = cur.gradient(w_k)
        residual = norm(g - cur.hvp(w_k, step.ihvp.v) - damping * step.ihvp.v)
    if solver == "lissa" and residual > RESIDUAL_GUARD * step.gradient_norm:
        # The product's residual guard (solvers.solve_lissa) refuses such a step: worse than v = 0.
        return [{**base, "sigma": None, "time_s": step_s, "hvp_count": step.ihvp.hvp_count,
                 "residual_norm": residual,
                 "error": f"refused by the residual guard: ‖g − (H + λI)v‖ = {residual:.3g} > "
                          f"{RESIDUAL_GUARD:g}·‖g‖ = {RESIDUAL_GUARD * step.gradient_norm:.3g} "
                          "(slow divergence; H + λI indefinite)"}]
    rows = []
    for sigma in SIGMAS:
        released = noisy_release(step.params_new, sigma) if sigma > 0 else step.params_new
        eps = (analytic_epsilon(sens.total, sigma, DELTA + sens.rho) if sigma > 0
               else math.inf)
        rows.append({
            **base, "sigma": sigma, "time_s": step_s, "elapsed_s": step.elapsed_s,
            "certify_s": cert_s, "hvp_count": step.ihvp.hvp_count,
            "iterations": step.ihvp.iterations, "residual_norm": residual,
            "gradient_norm": step.gradient_norm,
            "dist_to_retrain": norm(released - w_retrain),
            "accuracy": accuracies(s, released, forget, retain),
            "delta_newton": sens.newton_term, "delta_solver": sens.solver_term,
            "delta_total": sens.total, "delta_reason": sens.reason,
            "epsilon": eps, "certified_delta": DELTA + sens.rho, "error": None,
        })
    return rows


def lissa_depth(mu: float, scale: float, rel_tol: float, cap: int) -> tuple[int, float]:
    """Smallest s with (1 − μ/S)^{s+1} ≤ rel_tol (truncation bound of METHOD §4), capped."""
    q = 1.0 - mu / scale
    depth = max(1, math.ceil(math.log(rel_tol) / math.log(q)) - 1)
    depth = min(depth, cap)
    return depth, q ** (depth + 1)


def one_batch(args: argparse.Namespace, s: Setup, w_star: torch.Tensor, out: dict[str, Any]) -> None:
    n = s.x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + 1))
    forget, retain = perm[: args.forget].sort().values, perm[args.forget:].sort().values
    w_retrain, retrain_s = fresh_train(s, retain)
    out["retrain_s"] = retrain_s
    out["dist_original_to_retrain"] = norm(w_star - w_retrain)
    out["models"] = {"original": accuracies(s, w_star, forget, retain),
                     "retrain": accuracies(s, w_retrain, forget, retain)}
    lam = args.damping
    # Constants on D_r at w* (estimated once; their cost is reported, not part of a step).
    cur = RetainSetCurvature(s.objective, s.x[retain], s.y[retain])
    t = time.perf_counter()
    eig = lanczos_lambda_min(cur, w_star, steps=args.lanczos_steps, margin=0.0)
    hnorm = power_norm(cur, w_star, iterations=30 if not args.smoke else 8)
    out["constants_s"] = time.perf_counter() - t
    t = time.perf_counter()
    mb_norm = minibatch_power_norm(cur, w_star, 10, batches=256 if not args.smoke else 16,
                                   iterations=20 if not args.smoke else 5)
    out["minibatch_scale"] = {"estimate": mb_norm.estimate, "bound": mb_norm.bound,
                              "method": mb_norm.method, "elapsed_s": time.perf_counter() - t}
    lam_min = Constant(eig.lower_bound, "estimated", eig.method,
                       iterations=eig.iterations, residual=eig.residual)
    l_bound = Constant(hnorm.bound, "estimated", hnorm.method,
                       iterations=hnorm.iterations, residual=hnorm.residual)
    unknown = Constant.unknown("not declared")
    constants = {"lipschitz_hessian": unknown, "hessian_bound": l_bound,
                 "lambda_min": lam_min, "gradient_bound": unknown}
    out["constants"] = {k: {"value": c.value, "provenance": c.provenance, "method": c.method,
                            "iterations": c.iterations, "residual": c.residual}
                        for k, c in constants.items()}
    margin = 0.01
    lam_auto = auto_damping(lam, eig.lower_bound, margin)
    out["damping_auto"] = lam_auto
    rows: list[dict[str, Any]] = []
    seed = args.seed + 7
    w = w_star
    paper = {"depth": args.depth, "repeats": 10, "batch_size": 10, "scale": 1000.0,
             "compute_residual": False}
    rows += run_method(s, "lissa (paper: s=%d, r=10, b=10, S=1000)" % args.depth, "lissa", lam,
                       paper, w, retain, forget, w_retrain, constants, seed)
    mu = lam + eig.lower_bound
    # S must dominate the minibatch Hessians LiSSA actually multiplies by, not only ‖H‖: with
    # S = 1.1·‖H‖ alone the 10-sample series diverges at its first step (measured).
    scale = max(hnorm.bound, mb_norm.bound) + lam
    if mu > 0:
        depth, trunc = lissa_depth(mu, scale, 1e-2, args.max_depth)
        rows += run_method(s, f"lissa (S by power iteration, s={depth})", "lissa", lam,
                           {"depth": depth, "scale": scale, "compute_residual": False},
                           w, retain, forget, w_retrain, constants, seed,
                           {"truncation_factor": trunc})
    else:
        # The truncation bound is undefined (λ + λ_min ≤ 0); run at the cap and let the guard
        # speak: the row records the divergence error if the series blows up.
        rows += run_method(s, f"lissa (S by power iteration, s={args.max_depth}, λ+λ_min≤0)",
                           "lissa", lam, {"depth": args.max_depth, "scale": scale,
                                          "compute_residual": False},
                           w, retain, forget, w_retrain, constants, seed,
                           {"truncation_factor": None})
    mu_a = lam_auto + eig.lower_bound
    scale_a = max(hnorm.bound, mb_norm.bound) + lam_auto
    depth_a, trunc_a = lissa_depth(mu_a, scale_a, 1e-2, args.max_depth)
    rows += run_method(s, f"lissa auto-damped (λ={lam_auto:.4g}, S by power, s={depth_a})",
                       "lissa", lam_auto, {"depth": depth_a, "scale": scale_a,
                                           "compute_residual": False},
                       w, retain, forget, w_retrain, constants, seed,
                       {"truncation_factor": trunc_a})
    rows += run_method(s, "cg (rtol 1e-4)", "cg", lam,
                       {"rtol": 1e-4, "max_iter": args.cg_max_iter},
                       w, retain, forget, w_retrain, constants, seed)
    rows += run_method(s, f"cg auto-damped (λ={lam_auto:.4g}, rtol 1e-4)", "cg", lam_auto,
                       {"rtol": 1e-4, "max_iter": args.cg_max_iter},
                       w, retain, forget, w_retrain, constants, seed)
    out["rows"] = rows
    paper_row = rows[0]
    if paper_row.get("error") is None:
        out["unlearn_step_s"] = paper_row["time_s"]
        out["speedup_vs_retrain"] = retrain_s / paper_row["time_s"]
    else:
        out["unlearn_step_s"] = None
        out["speedup_vs_retrain"] = None

    # Reference vs product on the same minibatches (declared S: the draws are just randint).
    g = cur.gradient(w_star)
    gen_seed = args.seed + 11
    t = time.perf_counter()
    prod = solve_lissa(cur, w_star, g, lam, depth=args.depth, repeats=10, batch_size=10,
                       scale=1000.0, generator=torch.Generator().manual_seed(gen_seed),
                       compute_residual=False)
    prod_s = time.perf_counter() - t
    idx = lissa_draws(cur.n, args.depth, 10, 10, torch.Generator().manual_seed(gen_seed))
    t = time.perf_counter()
    ref = reference_lissa(s.objective, w_star, g, cur.x, cur.y, lam, 1000.0, idx)
    ref_s = time.perf_counter() - t
    # The same comparison in float64 separates the algorithms from float32 rounding (1000
    # recursions of float32 arithmetic in two different operation orders drift apart ~1e-5).
    obj64 = Objective(build_model("mlp", s.x.shape[1], int(s.y.max()) + 1, hidden=s.hidden,
                                  seed=s.recipe.seed).double(), s.recipe.weight_decay)
    cur64 = RetainSetCurvature(obj64, cur.x.double(), cur.y)
    w64, g64 = w_star.double(), g.double()
    prod64 = solve_lissa(cur64, w64, g64, lam, depth=args.depth, repeats=10, batch_size=10,
                         scale=1000.0, generator=torch.Generator().manual_seed(gen_seed),
                         compute_residual=False)
    ref64 = reference_lissa(obj64, w64, g64, cur64.x, cur64.y, lam, 1000.0, idx)
    out["reference"] = {"product_lissa_s": prod_s, "reference_lissa_s": ref_s,
                        "relative_difference": norm(prod.v - ref) / norm(ref),
                        "relative_difference_float64": norm(prod64.v - ref64) / norm(ref64),
                        "dtype": "float32 (timed); float64 (equality check, untimed)",
                        "depth": args.depth, "repeats": 10, "batch_size": 10}
    out["speedup_vs_reference"] = ref_s / prod_s


def sequential(args: argparse.Namespace, s: Setup, w_star: torch.Tensor,
               out: dict[str, Any]) -> None:
    n = s.x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + 2))
    constants = {k: Constant.unknown("not declared") for k in
                 ("lipschitz_hessian", "hessian_bound", "lambda_min", "gradient_bound")}
    paper = {"depth": args.depth, "repeats": 10, "batch_size": 10, "scale": 1000.0,
             "compute_residual": False}
    w_k = w_star
    rounds = []
    for k in range(args.rounds):
        forget = perm[k * args.round_size:(k + 1) * args.round_size].sort().values
        retain = perm[(k + 1) * args.round_size:].sort().values
        w_retrain, retrain_s = fresh_train(s, retain)
        rows = run_method(s, "lissa (paper)", "lissa", args.damping, paper, w_k, retain, forget,
                          w_retrain, constants, args.seed + 100 + k)
        ok = rows[0].get("error") is None
        for row in rows:
            row.update({"round": k + 1, "removed_total": (k + 1) * args.round_size,
                        "retrain_s": retrain_s, "dist_original_to_retrain":
                        norm(w_star - w_retrain),
                        "retrain_accuracy": accuracies(s, w_retrain, forget, retain)})
        rounds += rows
        if not ok:
            break
        # The next internal state is the noiseless one (METHOD §3 step 5).
        cur_rows = unlearn_step(s.objective, w_k, s.x[retain], s.y[retain], damping=args.damping,
                                radius=s.recipe.radius, solver="lissa", solver_options=paper,
                                generator=torch.Generator().manual_seed(args.seed + 100 + k))
        w_k = cur_rows.params_new
    out["sequential"] = rounds


def fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return format(v, spec)


def markdown(out: dict[str, Any]) -> str:
    lines = [f"# Paper MNIST benchmark ({out['epochs']} epochs"
             f"{', SMOKE slice' if out['smoke'] else ''}; n = {out['n']}, m = {out['m']})", ""]
    lines += [f"- retrain from scratch on D_r: {out['retrain_s']:.2f} s; "
              f"‖w* − w̃*‖ = {out['dist_original_to_retrain']:.4g}",
              f"- **speedup_vs_retrain** = {fmt(out['speedup_vs_retrain'], '.1f')}× "
              f"(whole step: gradient + solver + certificate = {fmt(out['unlearn_step_s'], '.3f')} s)",
              f"- **speedup_vs_reference** = {out['speedup_vs_reference']:.1f}× (reference LiSSA "
              f"{out['reference']['reference_lissa_s']:.2f} s vs product "
              f"{out['reference']['product_lissa_s']:.3f} s, same minibatches, relative difference "
              f"{out['reference']['relative_difference']:.2e} in float32, "
              f"{out['reference']['relative_difference_float64']:.2e} in float64)",
              f"- λ_min (Lanczos) ≥ {out['constants']['lambda_min']['value']:.4g} "
              f"(residual {out['constants']['lambda_min']['residual']:.2g}); ‖H‖ ≤ "
              f"{out['constants']['hessian_bound']['value']:.4g}; automatic damping λ = "
              f"{out['damping_auto']:.4g}; constants took {out['constants_s']:.1f} s",
              f"- LiSSA scale for b=10 minibatches: max ‖H_B‖ ≈ "
              f"{out['minibatch_scale']['estimate']:.4g} ({out['minibatch_scale']['method']})",
              ""]
    head = ("| method | λ | σ | time s | HVPs | ‖g−(H+λI)v‖/‖g‖ | ‖w̃−w̃*‖ | acc D_u | acc D_r | "
            "acc test | Δ_N | Δ_solver | Δ | ε (δ=1e-5+ρ) |")
    lines += [head, "|" + "---|" * 14]
    for name, acc in out["models"].items():
        d = 0.0 if name == "retrain" else out["dist_original_to_retrain"]
        t = out["retrain_s"] if name == "retrain" else out["train_s"]
        lines.append(f"| {name} | – | – | {t:.2f} | – | – | {d:.4g} | {acc['forget']:.4f} | "
                     f"{acc['retain']:.4f} | {acc['test']:.4f} | – | – | – | – |")
    for r in out["rows"]:
        if r.get("error"):
            lines.append(f"| {r['method']} | {r['damping']:.4g} | all | {r['time_s']:.2f} | – | – "
                         f"| error: {r['error'][:140]} | | | | | | | |")
            continue
        a = r["accuracy"]
        lines.append(
            f"| {r['method']} | {r['damping']:.4g} | {r['sigma']:g} | {r['time_s']:.3f} | "
            f"{r['hvp_count']} | {r['residual_norm'] / r['gradient_norm']:.3g} | "
            f"{r['dist_to_retrain']:.4g} | {a['forget']:.4f} | "
            f"{a['retain']:.4f} | {a['test']:.4f} | {fmt(r['delta_newton'])} | "
            f"{fmt(r['delta_solver'])} | {fmt(r['delta_total'])} | {fmt(r['epsilon'])} |")
    if out.get("sequential"):
        lines += ["", "## Sequential: rounds of deletions, lissa (paper settings)", "",
                  "| round | removed | σ | time s | retrain s | ‖w̃−w̃*‖ | ‖w*−w̃*‖ | acc D_u | "
                  "acc D_r | acc test | retrain acc D_u / test | Δ | ε |", "|" + "---|" * 13]
        for r in out["sequential"]:
            if r.get("error"):
                lines.append(f"| {r['round']} | {r['removed_total']} | all | {r['time_s']:.2f} "
                             f"| {r['retrain_s']:.2f} | error: {r['error'][:120]} | | | | | | | |")
                continue
            a, ra = r["accuracy"], r["retrain_accuracy"]
            lines.append(
                f"| {r['round']} | {r['removed_total']} | {r['sigma']:g} | {r['time_s']:.3f} | "
                f"{r['retrain_s']:.2f} | {r['dist_to_retrain']:.4g} | "
                f"{r['dist_original_to_retrain']:.4g} | {a['forget']:.4f} | {a['retain']:.4f} | "
                f"{a['test']:.4f} | {ra['forget']:.4f} / {ra['test']:.4f} | "
                f"{fmt(r['delta_total'])} | {fmt(r['epsilon'])} |")
    return "\n".join(lines) + "\n"


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in out["rows"] if not r.get("error") and r["sigma"] == 0.0]
    names = ["original", "retrain"] + [
        textwrap.fill(r["method"].replace("(", "").replace(")", ""), 22) for r in ok]
    accs = [out["models"]["original"], out["models"]["retrain"]] + [r["accuracy"] for r in ok]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    xs = np.arange(len(names))
    for i, split in enumerate(("forget", "retain", "test")):
        axes[0].bar(xs + (i - 1) * 0.27, [a[split] for a in accs], 0.27,
                    label={"forget": "D_u", "retain": "D_r", "test": "test"}[split])
    axes[0].set_xticks(xs, names, fontsize=6)
    lo = min(min(a.values()) for a in accs)
    axes[0].set_ylim(max(0.0, lo - 0.02), 1.0)
    axes[0].set_title("accuracy (σ = 0 release)")
    axes[0].legend()
    times = [out["retrain_s"]] + [r["time_s"] for r in ok]
    axes[1].bar(np.arange(len(times)), times, color=["gray"] + ["C0"] * len(ok))
    axes[1].set_xticks(np.arange(len(times)), ["retrain"] + names[2:], fontsize=6)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("seconds")
    axes[1].set_title("time per method vs retrain")
    seq = [r for r in out.get("sequential", []) if not r.get("error") and r["sigma"] == 0.0]
    if seq:
        axes[2].plot([r["removed_total"] for r in seq], [r["dist_to_retrain"] for r in seq],
                     "o-", label="‖w̃ − w̃*‖ (unlearned)")
        axes[2].plot([r["removed_total"] for r in seq],
                     [r["dist_original_to_retrain"] for r in seq], "s--",
                     label="‖w* − w̃*‖ (no unlearning)")
        axes[2].set_xlabel("samples removed")
        axes[2].set_title("sequential: distance to retrain")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    torch.set_num_threads(1)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = setup(args)
    out: dict[str, Any] = {"epochs": args.epochs, "smoke": args.smoke, "n": int(s.x.shape[0]),
                           "m": args.forget, "damping": args.damping, "delta": DELTA,
                           "rho": RHO, "sigmas": list(SIGMAS), "torch_threads": 1,
                           "torch": torch.__version__}
    if args.epochs != 50:
        out["note"] = f"training shortened to {args.epochs} epochs (paper: 50)"
    w_star, train_s = fresh_train(s, torch.arange(s.x.shape[0]))
    out["train_s"] = train_s
    one_batch(args, s, w_star, out)
    if args.rounds > 0:
        sequential(args, s, w_star, out)
    write_report(out_dir, "paper_mnist", out, markdown(out))
    if not args.no_plot:
        plot(out, out_dir / "paper_mnist.png")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
