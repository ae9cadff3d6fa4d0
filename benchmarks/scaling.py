"""How the cost of one unlearning step grows with n, p and m (issue 3 §5).

Each point runs in its own subprocess (so its peak resident memory, ``ru_maxrss``, is its own):
build the paper's MLP on real MNIST (widths (h, h)), take the retain set D_r (n rows) and forget
set (m rows), and time one whole step at the paper's LiSSA settings: retain-set gradient, solver,
projection and certificate. Three sweeps: n (retain set 5k → 59k), hidden width h (32 → 512, i.e.
p ≈ 26k → 670k), and m (1 → 10,000 forgotten in one batch). Writes ``<out>/scaling.json``,
``scaling.md`` (also printed) and a log-log ``scaling.png``.

The weights are the network's initialisation after one short epoch of training (the cost of a
step does not depend on how well the model is trained). ``--quick`` (default depth 200, fewer
points) keeps the run to about a minute; ``--full`` uses the paper's depth 1000 and all points;
``--smoke`` is for the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report_files import write_report

N_TRAIN = 60000


def child(n: int, width: int, m: int, depth: int, data_dir: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from app.unlearning.architectures import build_model
    from app.unlearning.bounds import Constant, certified_sensitivity
    from app.unlearning.calibration import analytic_epsilon
    from app.unlearning.datasets import load_builtin
    from app.unlearning.newton import unlearn_step
    from app.unlearning.objective import Objective
    from app.unlearning.training import TrainingRecipe, train

    torch.set_num_threads(1)
    data = load_builtin("mnist", Path(data_dir))
    x = torch.from_numpy(np.ascontiguousarray(data.x_train))
    y = torch.from_numpy(data.y_train)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    rows = perm[: n + m]
    retain = rows[m:]
    model = build_model("mlp", x.shape[1], data.num_classes, hidden=(width, width), seed=0)
    warm = TrainingRecipe(epochs=1, seed=0)
    w = train(model, x[rows[: min(len(rows), 5000)]], y[rows[: min(len(rows), 5000)]],
              warm).params
    objective = Objective(model, warm.weight_decay)
    t0 = time.perf_counter()
    step = unlearn_step(objective, w, x[retain], y[retain], damping=0.01, radius=warm.radius,
                        solver="lissa",
                        solver_options={"depth": depth, "repeats": 10, "batch_size": 10,
                                        "scale": 1000.0, "compute_residual": False},
                        generator=torch.Generator().manual_seed(1))
    unknown = Constant.unknown()
    sens = certified_sensitivity(radius=warm.radius, damping=0.01, lipschitz_hessian=unknown,
                                 hessian_bound=unknown, lambda_min=unknown,
                                 gradient_bound=unknown, solver="lissa", residual_norm=None,
                                 p=int(w.numel()), rho=1e-6)
    analytic_epsilon(sens.total, 1e-2, 1e-5 + sens.rho)
    total = time.perf_counter() - t0
    return {"n": int(retain.numel()), "width": width, "p": int(w.numel()), "m": m,
            "depth": depth, "step_s": total, "gradient_s": step.elapsed_s["gradient"],
            "solve_s": step.elapsed_s["solve"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def points(mode: str) -> tuple[list[tuple[str, int, int, int]], int]:
    """(sweep, n, width, m) per point, and the LiSSA depth."""
    if mode == "smoke":
        return [("n", 2000, 32, 100), ("width", 2000, 64, 100), ("m", 2000, 32, 1)], 10
    if mode == "quick":
        ns, widths, ms, depth = [5000, 20000, 59000], [32, 128, 512], [1, 100, 10000], 200
    else:
        ns = [5000, 10000, 20000, 40000, 59000]
        widths = [32, 64, 128, 256, 512]
        ms = [1, 10, 100, 1000, 10000]
        depth = 1000
    pts = [("n", n, 32, 1000) for n in ns]
    pts += [("width", N_TRAIN - 1000, h, 1000) for h in widths]
    pts += [("m", N_TRAIN - m, 32, m) for m in ms]
    return pts, depth


def markdown(results: list[dict[str, Any]], depth: int) -> str:
    lines = [f"# Scaling of one unlearning step (LiSSA s={depth}, r=10, b=10; 1 thread)", "",
             "| sweep | n (retain) | width | p | m | step s | gradient s | solve s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['sweep']} | {r['n']} | {r['width']} | {r['p']} | {r['m']} | "
                     f"{r['step_s']:.3f} | {r['gradient_s']:.3f} | {r['solve_s']:.3f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for j, (sweep, key, label) in enumerate((("n", "n", "retain set n"),
                                             ("width", "p", "parameters p"),
                                             ("m", "m", "forgotten m in one batch"))):
        rs = [r for r in results if r["sweep"] == sweep]
        xs = [r[key] for r in rs]
        axes[0, j].loglog(xs, [r["step_s"] for r in rs], "o-", label="whole step")
        axes[0, j].loglog(xs, [r["solve_s"] for r in rs], "s--", label="solver")
        axes[0, j].loglog(xs, [r["gradient_s"] for r in rs], "^:", label="gradient")
        axes[0, j].set_title(f"time vs {label}")
        axes[0, j].set_ylabel("seconds")
        axes[0, j].legend()
        axes[1, j].loglog(xs, [r["peak_rss_mib"] for r in rs], "o-")
        axes[1, j].set_xlabel(label)
        axes[1, j].set_ylabel("peak RSS MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="fewer points, depth 200 (default)")
    group.add_argument("--full", action="store_true", help="all points, paper depth 1000")
    group.add_argument("--smoke", action="store_true", help="tiny, for the test suite")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data-dir", default="var/data")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--child", nargs=4, type=int, metavar=("N", "WIDTH", "M", "DEPTH"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, data_dir=args.data_dir)))
        return []
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    pts, depth = points(mode)
    results = []
    for sweep, n, width, m in pts:
        if mode == "smoke":  # in-process: the peak RSS is then cumulative, seconds saved
            row = child(n, width, m, depth, args.data_dir)
        else:
            proc = subprocess.run(
                [sys.executable, __file__, "--data-dir", args.data_dir, "--child",
                 str(n), str(width), str(m), str(depth)],
                capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["sweep"] = sweep
        results.append(row)
        print(f"{sweep}: n={row['n']} p={row['p']} m={m} step {row['step_s']:.3f} s "
              f"peak {row['peak_rss_mib']:.0f} MiB", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ms = [r["step_s"] for r in results if r["sweep"] == "m"]
    summary = {"mode": mode, "depth": depth, "points": results,
               "m_sweep_max_over_min": (max(ms) / min(ms)) if ms else math.nan}
    write_report(out, "scaling", summary, markdown(results, depth))
    if not args.no_plot:
        plot(results, out / "scaling.png")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
