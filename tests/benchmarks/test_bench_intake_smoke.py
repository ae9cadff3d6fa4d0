"""The intake benchmark runs end to end for a second against the CI PostgreSQL, so it cannot rot;
its bookkeeping must hold even then: every accepted request stored, nothing unacknowledged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("LETHE_TEST_POSTGRES_URL")


@pytest.mark.skipif(not PG_URL, reason="LETHE_TEST_POSTGRES_URL is not set")
def test_intake_benchmark_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "intake.py"), "--database-url", str(PG_URL),
         "--seconds", "1", "--warmup-s", "0.5", "--clients", "4", "--api-workers", "1",
         "--batch-max-samples", "10", "--out", str(tmp_path)],
        cwd=ROOT, timeout=300, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "intake.json").read_text())
    stored = report["stored"]
    assert report["accepted"] > 0 and set(report["status_counts"]) == {"202"}
    assert stored["accepted_missing"] == 0 and stored["stored_unacknowledged"] == 0
    assert stored["rows"] == stored["accepted_including_warmup"] == stored["idempotency_keys"]
    assert stored["unlearn_jobs_sealed"] > 0  # batching stayed on
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert "| accepted/s |" in (tmp_path / "intake.md").read_text()
