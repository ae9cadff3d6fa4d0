"""The benchmarks run end to end on a tiny slice (``--smoke``), so they cannot rot.

They need the real MNIST file: fetched once into var/data (as ``make demo`` does) if missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "var" / "data" / "mnist.npz"



@pytest.fixture(autouse=True, scope="module")
def _mnist() -> None:
    from app.unlearning.datasets import fetch_mnist

    fetch_mnist(MNIST.parent)  # idempotent: a checksum check when the file is already there


def _run(script: str, out: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out",
                    str(out), "--data-dir", str(MNIST.parent)], check=True, cwd=ROOT,
                   timeout=120, capture_output=True)


def test_paper_mnist_smoke(tmp_path: Path) -> None:
    _run("paper_mnist.py", tmp_path)
    out = json.loads((tmp_path / "paper_mnist.json").read_text())
    assert out["smoke"] is True
    assert out["speedup_vs_reference"] > 0 and out["speedup_vs_retrain"] is not None
    assert out["reference"]["relative_difference"] <= 1e-5
    methods = {row["method"].split(" (")[0] for row in out["rows"]}
    assert {"lissa", "lissa auto-damped", "cg", "cg auto-damped"} <= methods
    ok = [row for row in out["rows"] if not row.get("error")]
    assert {row["sigma"] for row in ok} == {0.0, 1e-3, 1e-2}
    assert out["sequential"] and out["constants"]["lambda_min"]["provenance"] == "estimated"
    assert (tmp_path / "paper_mnist.md").read_text().count("|") > 50
    assert (tmp_path / "paper_mnist.png").stat().st_size > 0


def test_scaling_smoke(tmp_path: Path) -> None:
    _run("scaling.py", tmp_path)
    out = json.loads((tmp_path / "scaling.json").read_text())
    assert {p["sweep"] for p in out["points"]} == {"n", "width", "m"}
    assert all(p["step_s"] > 0 and p["peak_rss_mib"] > 0 for p in out["points"])
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_gpu_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/gpu.py's smallest slice on the CPU: every case runs and reports every figure."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--slice", "smoke",
                           "--device", "cpu", "--out", str(tmp_path), "--data-dir",
                           str(MNIST.parent)], cwd=ROOT, timeout=120, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads((tmp_path / "gpu.json").read_text())
    assert out["slice"] == "smoke" and out["runtime"]["device"] == "cpu"
    rows = {row["case"]: row for row in out["rows"]}
    assert set(rows) == {"mlp/mnist", "allcnn/synthetic-cifar10", "resnet18/synthetic-svhn"}
    for row in rows.values():
        assert row["unlearn_error"] is None, row
        assert row["train_s"] > 0 and row["unlearn_s"] > 0 and row["retrain_s"] > 0
        assert row["hvp_per_s"] > 0 and row["minibatch_hvps"] == row["lissa"]["depth"] * 10
        assert row["train_peak_mib"] > 0 and row["speedup_vs_retrain"] > 0
        assert set(row["accuracy"]) == {"original", "unlearned", "retrained"}
        assert row["determinism_guard"] == "passed"
    assert "| resnet18/synthetic-svhn |" in proc.stdout


def test_forget_gap_smoke(tmp_path: Path) -> None:
    """benchmarks/forget_gap.py (why the demo trains 3 epochs) reports every figure per draw."""
    _run("forget_gap.py", tmp_path)
    out = json.loads((tmp_path / "forget_gap.json").read_text())
    assert out["smoke"] is True and len(out["rows"]) == 1
    row = out["rows"][0]
    assert len(row["draws"]) == out["draws"] == 2
    stepped = [d for d in row["draws"] if "refused" not in d]
    assert len(stepped) + row["draws_refused"] == 2 and stepped
    for draw in stepped:
        acc = draw["accuracy_percent"]
        assert draw["forget_gap_points"] == acc["unlearned"]["forget"] - acc["retrained"]["forget"]
        assert 0 < draw["step_distance"] and 0 < draw["retrain_distance"]
    assert "| draws passing |" in (tmp_path / "forget_gap.md").read_text()
