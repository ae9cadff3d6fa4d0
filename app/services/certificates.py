"""Certificates of releases (METHOD §8): built only from the fields of the math's results.

A certificate is a plain JSON object. Every number in it is computed from the released weights
(their SHA-256, their accuracies) or from the recorded inputs of the bound, so a third party can
recompute σ from Δ, ε and δ. The publish transaction stamps it (:func:`finalize`) and signs it
(``app.services.signing``: Ed25519 over RFC 8785 canonical JSON); ``lethe verify`` checks it.
"""

from __future__ import annotations

import math
import os
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.services.merkle import COMMITMENT_SCHEME, merkle_root
from app.unlearning.datasets import BUILTIN_DATASETS

if TYPE_CHECKING:  # the engine passes these; importing them here would pull torch into the API
    from app.services.compute import TrainOutcome, UnlearnOutcome
    from app.services.engine import JobContext

SCHEMA = "lethe.certificate/v1"
SOURCES = {
    "method": "Zhang, Dong, Wang, Li, Towards Certified Unlearning for Deep Neural Networks, "
              "ICML 2024 (arXiv 2408.00920), Alg. 1-2, Thm 3.4",
    "calibration": "Balle & Wang, Improving the Gaussian Mechanism for Differential Privacy, "
                   "ICML 2018, Thm 8 (analytic Gaussian mechanism)",
}


WEIGHTS_FILE_TERMS = (
    "safetensors file: every trainable parameter (w, the vector that Δ, σ and the guarantee are "
    "about; noised in an unlearned release) plus the module's persistent buffers (BatchNorm "
    "running statistics), which are not part of w: Lethe runs BatchNorm in eval mode in training "
    "and in every curvature computation, so the buffers keep their initial values (mean 0, "
    "variance 1), depend on no sample, and are released as they are"
)
"""What a released weights file holds, stated in every certificate (METHOD §2, §8)."""


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when the code runs from a checkout."""
    version = metadata.version("lethe")
    if env := os.environ.get("LETHE_CODE_VERSION"):
        return f"{version}+{env}"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent,
                             check=True).stdout.strip()
        return f"{version}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return version


def _finite(x: float | None) -> float | str | None:
    """JSON has no infinity: an unbounded figure is written as the string "Infinity"."""
    if x is None:
        return None
    return "Infinity" if math.isinf(x) else float(x)


def _dataset(ctx: JobContext) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ctx.dataset_id, "source": ctx.dataset_source,
                           "checksum_sha256": ctx.dataset_checksum, "n": ctx.dataset_n}
    info = BUILTIN_DATASETS.get(ctx.dataset_source)
    if info is not None and info.synthetic:  # never let a reader take it for the real dataset
        out |= {"synthetic": True, "description": info.description}
    return out


def _base(ctx: JobContext, method: str, sha: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "model": {"id": ctx.model_id, "name": ctx.model_name, "architecture": ctx.architecture,
                  "weights_file": WEIGHTS_FILE_TERMS},
        "dataset": _dataset(ctx),
        "method": method,
        "weights_sha256": sha,
        "training": ctx.training,
        "job_id": ctx.job_id,
        # What computed the weights: device and its name, torch, CUDA and cuDNN versions.
        "runtime": ctx.runtime,
        "code_version": code_version(),
        "sources": SOURCES,
    }


def _forgotten(new: list[int], all_removed: list[int] | None, retain_size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"m": len(new), "merkle_root": merkle_root(new),
                           "commitment": COMMITMENT_SCHEME, "retain_size": retain_size}
    if all_removed is not None:
        out["lineage_total"] = len(all_removed)
        out["lineage_merkle_root"] = merkle_root(all_removed)
    return out


def for_training(ctx: JobContext, sha: str, outcome: TrainOutcome, metrics: dict[str, Any],
                 elapsed_s: float) -> dict[str, Any]:
    """Version 0: nothing forgotten, nothing to certify; records the recipe and diagnostics."""
    return _base(ctx, "train", sha) | {
        "parent_version": None, "parent_weights_sha256": None,
        "forgotten": _forgotten([], None, outcome.retain_size),
        "guarantee": {"kind": "none", "detail": "original training on the full dataset D"},
        "diagnostics": {"final_grad_norm": outcome.final_grad_norm},
        "metrics": metrics, "timings_s": {"train": outcome.elapsed_s, "total": elapsed_s},
    }


def for_retrain(ctx: JobContext, sha: str, parent: int, parent_sha: str, new: list[int],
                removed: list[int],
                outcome: TrainOutcome, metrics: dict[str, Any], elapsed_s: float,
                reason: str) -> dict[str, Any]:
    """Exact removal: retrained from scratch on D_r with the original recipe and seed (ε = 0)."""
    return _base(ctx, "retrain", sha) | {
        "parent_version": parent, "parent_weights_sha256": parent_sha,
        "forgotten": _forgotten(new, removed, outcome.retain_size),
        "guarantee": {"kind": "exact", "epsilon": 0.0, "delta": 0.0,
                      "detail": "retrained from scratch on the retain set; starts a new lineage"},
        "reason": reason,
        "noise": {"noise_std": 0.0},
        "budget": {"accountant": "none", "cumulative_epsilon": 0.0, "cumulative_delta": 0.0,
                   "releases_in_lineage": 0},
        "diagnostics": {"final_grad_norm": outcome.final_grad_norm},
        "metrics": metrics, "timings_s": {"train": outcome.elapsed_s, "total": elapsed_s},
    }


def for_unlearning(ctx: JobContext, sha: str, parent: int, parent_sha: str, new: list[int],
                   outcome: UnlearnOutcome, ledger: dict[str, Any],
                   metrics: dict[str, Any]) -> dict[str, Any]:
    """A certified Newton release (METHOD §3–6), with every term of Δ and its constants."""
    cert_cfg = ctx.certification
    ihvp = outcome.step.ihvp
    sens = outcome.sensitivity
    return _base(ctx, f"newton-{ihvp.solver}", sha) | {
        "parent_version": parent, "parent_weights_sha256": parent_sha,
        "forgotten": _forgotten(new, None, ledger["retain_size"]),
        "constants": {name: {"value": c.value, "provenance": c.provenance, "method": c.method,
                             "iterations": c.iterations, "residual": c.residual}
                      for name, c in outcome.constants.items()},
        "radius": float(ctx.training["radius"]),
        # The λ the solver used (automatic damping may have raised the requested one).
        "damping": float(ihvp.diagnostics.get("damping", cert_cfg["damping"])),
        "damping_requested": float(cert_cfg["damping"]),
        "solver": {"name": ihvp.solver, "iterations": ihvp.iterations, "hvp_count": ihvp.hvp_count,
                   "residual_norm": ihvp.residual_norm, "converged": ihvp.converged,
                   "minibatch_seed": outcome.minibatch_seed, **ihvp.diagnostics},
        "sensitivity": {"newton_term": _finite(sens.newton_term),
                        "solver_term": _finite(sens.solver_term), "total": sens.total,
                        "bounded_by_radius": sens.bounded_by_radius, "reason": sens.reason,
                        "rho": sens.rho},
        "noise": {"noise_std": outcome.noise_std, "distribution": "gaussian N(0, sigma^2 I_p)",
                  "generator": "torch.Generator seeded from the OS CSPRNG (secrets); seed not kept",
                  "calibrated_from": ("target_epsilon" if cert_cfg.get("target_epsilon") is not None
                                      else "fixed noise_std")},
        "guarantee": {"kind": "(epsilon, delta)-certified unlearning", "mechanism": "analytic-gaussian",
                      "sensitivity": sens.total, "noise_std": outcome.noise_std,
                      "epsilon": _finite(outcome.epsilon), "delta": outcome.delta,
                      "rho": sens.rho, "certified_delta": outcome.certified_delta,
                      "classical_gaussian": outcome.classical},
        "budget": {"accountant": ledger["accountant"],
                   "cumulative_epsilon": _finite(ledger["cumulative_epsilon"]),
                   "cumulative_delta": ledger["cumulative_delta"],
                   "releases_in_lineage": ledger["releases"],
                   "forgotten_fraction": ledger["forgotten_fraction"]},
        "diagnostics": {"gradient_norm": outcome.step.gradient_norm,
                        "step_norm": outcome.step.step_norm},
        "metrics": metrics,
        "timings_s": outcome.elapsed_s,
    }


def finalize(cert: dict[str, Any], *, version: int, lineage: int) -> dict[str, Any]:
    """Stamp the fields that the publish transaction assigns."""
    return cert | {"version": version, "lineage": lineage,
                   "issued_at": datetime.now(timezone.utc).isoformat()}
