"""The upload benchmark runs end to end on a tiny dataset, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_uploads_benchmark_smoke(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "uploads.py"), "--n", "30",
                    "--d", "4", "--repeats", "1", "--out", str(tmp_path)],
                   check=True, cwd=ROOT, timeout=120, capture_output=True)
    report = json.loads((tmp_path / "uploads.json").read_text())
    (sqlite,) = report["results"]
    assert sqlite["dialect"] == "sqlite" and sqlite["register_s"] > 0
    assert set(sqlite["resolve_samples_s"]) == {"1", "30"}
    assert set(sqlite["resolve_subjects_s"]) == {"10"}
