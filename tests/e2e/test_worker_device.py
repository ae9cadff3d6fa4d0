"""A worker asked for a GPU that is not there refuses to start, with the reason in its log, and
``lethe serve`` stops instead of restarting it forever (no silent CPU fallback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service_harness import ROOT, _free_port


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda would start")
def test_serve_stops_when_the_worker_has_no_gpu(tmp_path: Path) -> None:
    env = os.environ | {"LETHE_HOME": str(tmp_path), "LETHE_WORKER_THREADS": "1"}
    for var in ("LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_DEVICE"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(_free_port()),
                           "--device", "cuda"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    assert "LETHE_DEVICE=cuda asks for a GPU but torch sees none" in log
    assert "a worker refused its device (LETHE_DEVICE); stopping" in log
    assert log.count("lethe worker cannot start") == 1  # not restarted
