"""The API process never imports torch, not even indirectly (DESIGN.md, what may import what)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys, warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from app.api.main import create_app

    admin = {"Authorization": "Bearer k"}
    with TestClient(create_app()) as client:
        assert client.get("/healthz").status_code == 200
        ds = client.post("/v1/datasets", json={"name": "d", "source": "digits"}, headers=admin)
        assert ds.status_code == 201, ds.text
        model = client.post("/v1/models", headers=admin, json={
            "name": "m", "dataset_id": ds.json()["id"], "architecture": "mlp"})
        assert model.status_code == 202, model.text
        # A registered architecture is accepted by name: its factory (which imports torch) is
        # imported only by the worker.
        owner = client.post("/v1/models", headers=admin, json={
            "name": "o", "dataset_id": ds.json()["id"], "architecture": "owner-cnn",
            "training": {"width": 8}})
        assert owner.status_code == 202, owner.text
        conv = client.post("/v1/models", headers=admin, json={
            "name": "c", "dataset_id": ds.json()["id"], "architecture": "allcnn"})
        assert conv.status_code == 202, conv.text
        r = client.post(f"/v1/models/{model.json()['id']}/deletion-requests",
                        json={"sample_ids": ["1"]}, headers=admin)
        assert r.status_code == 202, r.text
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("TORCH_MODULES", loaded)
    sys.exit(1 if loaded else 0)
""")


def test_serving_requests_never_imports_torch(tmp_path):
    env = {**os.environ, "LETHE_HOME": str(tmp_path), "LETHE_BOOTSTRAP_ADMIN_KEY": "k",
           "LETHE_ARCHITECTURES": '{"owner-cnn": "tests.owner_architectures:small_cnn"}',
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for var in ("LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_DATA_DIR"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TORCH_MODULES []" in proc.stdout


IMPORT_SCRIPT = textwrap.dedent("""
    import sys
    import app, app.cli, workers.celery_app, workers.tasks
    from app.api.main import create_app
    create_app()
    # Neither the API nor importing the worker's modules loads torch, let alone CUDA: the worker
    # prepares its device in worker_process_init, after it starts (never before a fork).
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    import torch
    assert not torch.cuda.is_initialized()
    print("CUDA_UNTOUCHED")
""")


def test_importing_the_app_and_the_worker_tasks_never_initialises_cuda(tmp_path):
    env = {**os.environ, "LETHE_HOME": str(tmp_path), "LETHE_DEVICE": "cuda",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for var in ("LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_DATA_DIR"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CUDA_UNTOUCHED" in proc.stdout
