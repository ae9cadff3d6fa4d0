"""A real ``lethe serve`` process for the end-to-end and integration suites, and the digits
flow through version 1 over HTTP (imported by tests; the fixture lives in conftest.py)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_KEY = "pg-admin-key-0123456789"
"""Admin key of the in-process API that the integration suite's ``client`` fixture starts."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveService:
    """A ``lethe serve`` subprocess with its own LETHE_HOME and admin key."""

    def __init__(self, home: Path, env: dict[str, str], workers: int = 1) -> None:
        self.key = secrets.token_urlsafe(16)
        self.home = home
        self.port = _free_port()
        self.log_path = home / "serve.log"
        home.mkdir(parents=True, exist_ok=True)
        full_env = os.environ | {"LETHE_HOME": str(home), "LETHE_BOOTSTRAP_ADMIN_KEY": self.key,
                                 "LETHE_WORKER_THREADS": "1"} | env
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(self.port),
                                      "--workers", str(workers)],
                                     cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30,
                                 headers={"Authorization": f"Bearer {self.key}"})
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lethe serve exited early:\n{self.log()}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"lethe serve did not come up:\n{self.log()}")
            time.sleep(0.3)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_for(self, path: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self.http.get(path).json()
            if done(body):
                return body
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting on {path}; last {body}\n{self.log()}")

    def create_model(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/models`` (202 expected): the created model."""
        created = self.http.post("/v1/models", json=spec)
        assert created.status_code == 202, created.text
        return created.json()

    def wait_trained(self, model_id: str) -> dict[str, Any]:
        """The model once its training job has ended (``ready`` or ``failed``)."""
        return self.wait_for(f"/v1/models/{model_id}", lambda m: m["status"] != "training")

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def digits_flow(service: LiveService) -> dict[str, Any]:
    """Register digits, train a small MLP, forget 30 samples in 3 requests → version 1; checks
    the version's file against its certificate. Returns what later assertions need."""
    http = service.http
    dataset = http.post("/v1/datasets", json={"name": "digits", "source": "digits"})
    assert dataset.status_code == 201, dataset.text
    model_id = service.create_model({
        "name": "digits-mlp", "dataset_id": dataset.json()["id"], "architecture": "mlp",
        "training": {"epochs": 15, "batch_size": 64, "lr": 3e-3},
        "certification": {"solver": "lissa", "depth": 200, "repeats": 4, "batch_size": 10,
                          "damping": 0.01, "noise_std": 0.01},
        "batching": {"max_samples": 30, "max_wait_seconds": 600},
    })["id"]
    model = service.wait_trained(model_id)
    assert model["status"] == "ready" and model["current_version"] == 0, (model, service.log())

    ids = [str(i) for i in range(100, 130)]
    locations = []
    for chunk in (ids[:1], ids[1:10], ids[10:]):
        answer = http.post(f"/v1/models/{model_id}/deletion-requests", json={"sample_ids": chunk})
        assert answer.status_code == 202, answer.text
        locations.append(answer.headers["Location"])
    finals = [service.wait_for(loc, lambda r: r["status"] in ("completed", "failed")) for loc in locations]
    assert [r["status"] for r in finals] == ["completed"] * 3, (finals, service.log())
    assert {r["version"] for r in finals} == {1}

    versions = http.get(f"/v1/models/{model_id}/versions").json()
    assert [(v["number"], v["kind"]) for v in versions] == [(0, "trained"), (1, "unlearned")]
    cert = http.get(f"/v1/models/{model_id}/versions/1/certificate").json()
    blob = http.get(f"/v1/models/{model_id}/versions/1/download")
    assert blob.status_code == 200
    assert hashlib.sha256(blob.content).hexdigest() == cert["weights_sha256"] == versions[1]["sha256"]
    assert cert["forgotten"]["m"] == 30 and cert["method"] == "newton-lissa"
    assert cert["guarantee"]["noise_std"] == 0.01 and cert["guarantee"]["epsilon"] > 0
    return {"model_id": model_id, "certificate": cert, "versions": versions}


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` that has ``initdb`` and ``pg_ctl`` (as .ci/run
    picks it), or ``None``."""
    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin")
             if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return max(found, key=lambda d: int(d.parent.name)) if found else None


class ThrowawayPostgres:
    """A PostgreSQL cluster of one's own that a test may stop and start: initdb into a temp
    folder, trust auth on loopback, its socket in that folder. Run as the ``postgres`` user when
    the tests run as root (initdb refuses root), as .ci/run does."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="lethe-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.port = _free_port()
        self.log = self.dir / "log"
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._as_owner([str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust",
                        "-U", "postgres"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, argv: list[str]) -> None:
        if os.getuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                        "-w", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                        "start"])

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back open transactions and close their connections, then stop."""
        self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                        "stop"])

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


def forget_process_state() -> None:
    """Drop what this process cached from earlier settings: the broker producer, the database
    engine and the settings (tests switch ``LETHE_*`` between apps in one process)."""
    from app import broker
    from app.db.session import reset_engine
    from app.settings import get_settings

    if broker.producer.cache_info().currsize:
        broker.producer().close()
    broker.producer.cache_clear()
    reset_engine()
    get_settings.cache_clear()
