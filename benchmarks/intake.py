"""Intake throughput: accepted deletion requests per second on PostgreSQL (issue 4 §4).

One command: creates a fresh database on the PostgreSQL server given by ``--database-url`` (or
``LETHE_BENCH_POSTGRES_URL`` / ``LETHE_TEST_POSTGRES_URL``), starts the production API
(``lethe api --workers N``) against it, and a ``lethe worker`` only long enough to train the
model (digits, logistic regression); then drives ``POST /v1/models/{id}/deletion-requests`` from
``--clients`` concurrent keep-alive connections (aiohttp, in ``--loadgen-procs`` separate
processes) for ``--seconds``, after ``--warmup-s`` of unmeasured load. Each request names 1 to
``--max-ids`` random training rows and, like :class:`app.client.LetheClient`, carries a fresh
``Idempotency-Key`` (``--no-idempotency-key`` to leave it off).

Batching stays on: the model seals every ``--batch-max-samples`` distinct samples (default 1000,
the service's default), so sealing is part of what is measured; no worker runs during the load,
so the sealed jobs wait in the broker, which is purged at the end.

Afterwards it counts the rows of ``deletion_requests`` and checks that every request answered
202 is stored (and reports rows that no client saw accepted). Writes ``<out>/intake.json`` and
``intake.md`` (also printed), with the configuration, CPU pinning and the machine's load
(``/proc/loadavg``) before and after, since other processes on the machine skew the figures,
and the CPU seconds per accepted request of the API processes, the load generators and (when the
server runs on this machine) PostgreSQL: ``cores / total`` bounds what a quiet machine could do.
``LETHE_API_MAX_IN_FLIGHT`` and the other ``LETHE_*`` settings pass through to the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from report_files import write_report

ROOT = Path(__file__).resolve().parent.parent


# --- load generator (a child process) ----------------------------------------------------------


class _Ids:
    """Sample ids in the order of a random permutation of the training rows, cycled: a request
    never repeats a row that another request of the current batch window named (real clients
    rarely ask twice), and with ``n`` larger than a batch the pending ids stay distinct.
    Load generator ``proc`` of ``procs`` takes every ``procs``-th position."""

    def __init__(self, n: int, rng: random.Random, proc: int, procs: int) -> None:
        self.order = rng.sample(range(n), n)
        self.pos, self.step = proc, procs

    def take(self, k: int) -> list[str]:
        out = []
        for _ in range(k):
            out.append(str(self.order[self.pos % len(self.order)]))
            self.pos += self.step
        return out


async def _client_loop(session: Any, url: str, ids: _Ids, max_ids: int, idem: bool,
                       start_at: float, stop_at: float, rng: random.Random,
                       out: list[tuple[int, float, str | None, bool]]) -> None:
    import aiohttp

    while True:
        now = time.monotonic()
        if now >= stop_at:
            return
        sample_ids = ids.take(rng.randint(1, max_ids))
        headers = {"Idempotency-Key": uuid.uuid4().hex} if idem else {}
        t0 = time.perf_counter()
        try:
            async with session.post(url, json={"sample_ids": sample_ids},
                                    headers=headers) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status, body = 0, b""
        latency_s = time.perf_counter() - t0
        request_id = json.loads(body)["id"] if status == 202 else None
        # (status, latency, id if accepted, sent inside the measured window)
        out.append((status, latency_s, request_id, now >= start_at))


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    rng = random.Random(args.seed)
    ids = _Ids(args.n, random.Random(args.permutation_seed), args.proc, args.procs)
    url = f"{args.url}/v1/models/{args.model_id}/deletion-requests"
    connector = aiohttp.TCPConnector(limit=args.clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    out: list[tuple[int, float, str | None, bool]] = []
    start_at = time.monotonic() + args.warmup_s
    stop_at = start_at + args.seconds
    async with aiohttp.ClientSession(
            connector=connector, timeout=timeout,
            headers={"Authorization": f"Bearer {args.key}"}) as session:
        await asyncio.gather(*(
            _client_loop(session, url, ids, args.max_ids, not args.no_idempotency_key,
                         start_at, stop_at, random.Random(rng.random()), out)
            for _ in range(args.clients)))
    return {"results": out}


def loadgen_main(args: argparse.Namespace) -> None:
    result = asyncio.run(_load(args))
    Path(args.loadgen_out).write_text(json.dumps(result))


# --- orchestration ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the uvicorn supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo.extend(children.get(out[-1], []))
    return out


def _cpu_s(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes that still exists."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def _postgres_pids(admin: Any, db_name: str) -> list[int]:
    """The server's processes that work for this benchmark: the backends connected to its
    database and the shared ones (WAL writer, checkpointer, ...). Only counted when the server
    runs on this machine (its pids are then in /proc)."""
    from sqlalchemy import text

    with admin.connect() as conn:
        rows = conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = :d OR backend_type <> "
            "'client backend'"), {"d": db_name}).scalars().all()
    return [int(pid) for pid in rows if _comm(int(pid)) == "postgres"]


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation) of a sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-q * len(sorted_values) // 100)))
    return sorted_values[rank - 1]


def _wait_http(http: Any, path: str, proc: subprocess.Popen[bytes], log: Path,
               timeout_s: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited early:\n{log.read_text()[-4000:]}")
        try:
            if http.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not come up:\n{log.read_text()[-4000:]}")


def _setup_model(http: Any, env: dict[str, str], home: Path, batch_max_samples: int) -> tuple[str, int]:
    """Register digits, create a logreg model and train it with a short-lived worker."""
    dataset = http.post("/v1/datasets", json={"name": "digits", "source": "digits"})
    dataset.raise_for_status()
    created = http.post("/v1/models", json={
        "name": "intake-bench", "dataset_id": dataset.json()["id"], "architecture": "logreg",
        "training": {"epochs": 5, "batch_size": 64},
        "batching": {"max_samples": batch_max_samples, "max_wait_seconds": 3600},
    })
    created.raise_for_status()
    model_id = created.json()["id"]
    with (home / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            model = http.get(f"/v1/models/{model_id}").json()
            if model["status"] != "training":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the model did not finish training in 180 s")
            time.sleep(0.5)
        if model["status"] != "ready":
            raise RuntimeError(f"training failed: {model}")
    finally:
        worker.terminate()
        worker.wait(60)
    return model_id, int(dataset.json()["n"])


def _cpus(spec: str | None) -> set[int] | None:
    return {int(c) for c in spec.split(",")} if spec else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Create the database, measure, and drop it (and the temp home) whatever happens."""
    from sqlalchemy import create_engine, text

    server_url = (args.database_url or os.environ.get("LETHE_BENCH_POSTGRES_URL")
                  or os.environ.get("LETHE_TEST_POSTGRES_URL"))
    if not server_url:
        raise SystemExit("give --database-url (or LETHE_BENCH_POSTGRES_URL): a PostgreSQL server "
                         "where this benchmark may create and drop a database")
    db_name = f"lethe_intake_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        pg_settings = {name: conn.execute(text(f"SHOW {name}")).scalar_one()
                       for name in ("synchronous_commit", "fsync", "max_connections",
                                    "server_version")}
    database_url = server_url.rsplit("/", 1)[0] + f"/{db_name}"
    home = Path(tempfile.mkdtemp(prefix="lethe-intake-"))
    try:
        summary = _measure(args, admin, db_name, database_url, home)
        summary["config"]["postgres"] = pg_settings
        return summary
    finally:
        if not args.keep_database:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            shutil.rmtree(home, ignore_errors=True)
        admin.dispose()


def _measure(args: argparse.Namespace, admin: Any, db_name: str, database_url: str,
             home: Path) -> dict[str, Any]:
    """Start the API, train the model, drive the load, count the rows; see the module docstring."""
    import httpx
    from sqlalchemy import create_engine, text

    from app.settings import Settings

    broker_url = args.broker_url or os.environ.get("LETHE_BENCH_REDIS_URL") or "lethefs://"
    key = secrets.token_urlsafe(24)
    port = _free_port()
    env = os.environ | {"LETHE_HOME": str(home), "LETHE_DATABASE_URL": database_url,
                        "LETHE_BROKER_URL": broker_url, "LETHE_BOOTSTRAP_ADMIN_KEY": key,
                        "LETHE_WORKER_THREADS": "1"}
    api_log = home / "api.log"
    api_cpus = _cpus(args.api_cpus)
    with api_log.open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--port", str(port),
             "--workers", str(args.api_workers)], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, api_cpus)) if api_cpus else None)
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}"})
    loadgens: list[subprocess.Popen[bytes]] = []
    try:
        _wait_http(http, "/healthz", api, api_log)
        model_id, n = _setup_model(http, env, home, args.batch_max_samples)
        load_before = _loadavg()
        loadgen_cpus = _cpus(args.loadgen_cpus)
        per_proc = [args.clients // args.loadgen_procs + (i < args.clients % args.loadgen_procs)
                    for i in range(args.loadgen_procs)]
        outs = [home / f"loadgen{i}.json" for i in range(args.loadgen_procs)]
        for i, clients in enumerate(per_proc):
            loadgens.append(subprocess.Popen(
                [sys.executable, __file__, "--loadgen", "--url", base, "--key", key,
                 "--model-id", model_id, "--n", str(n), "--clients", str(clients),
                 "--seconds", str(args.seconds), "--warmup-s", str(args.warmup_s),
                 "--max-ids", str(args.max_ids), "--seed", str(args.seed + 1 + i),
                 "--permutation-seed", str(args.seed), "--proc", str(i),
                 "--procs", str(args.loadgen_procs),
                 "--loadgen-out", str(outs[i])]
                + (["--no-idempotency-key"] if args.no_idempotency_key else []),
                cwd=ROOT, env=env,
                preexec_fn=(lambda: os.sched_setaffinity(0, loadgen_cpus)) if loadgen_cpus else None))
        time.sleep(args.warmup_s)
        cpu_pids = {"api": _tree(api.pid), "loadgen": [p.pid for p in loadgens],
                    "postgres": _postgres_pids(admin, db_name)}
        cpu_before = {k: _cpu_s(v) for k, v in cpu_pids.items()}
        spy = None
        if args.py_spy:  # sample the API processes during the measured window (collapsed stacks)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([args.py_spy, "record", "--subprocesses", "--format", "raw",
                                    "-r", "200", "-d", str(int(args.seconds)), "-p", str(api.pid),
                                    "-o", str(Path(args.out) / "intake-api.stacks")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds)
        cpu_used = {k: _cpu_delta(cpu_before[k], _cpu_s(v)) for k, v in cpu_pids.items()}
        for proc in loadgens:
            if proc.wait(args.seconds + args.warmup_s + 120) != 0:
                raise RuntimeError(f"a load generator exited with {proc.returncode}")
        load_after = _loadavg()
        if spy is not None:
            spy.wait(60)
        results = [row for path in outs for row in json.loads(path.read_text())["results"]]
    finally:
        for proc in loadgens:
            if proc.poll() is None:
                proc.kill()
        http.close()
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored_ids = set(conn.execute(text(
            "SELECT id FROM deletion_requests WHERE model_id = :m"), {"m": model_id}).scalars())
        row_count = conn.execute(text("SELECT count(*) FROM deletion_requests")).scalar_one()
        by_status = dict(conn.execute(text(
            "SELECT status, count(*) FROM deletion_requests GROUP BY status")).all())
        jobs_sealed = conn.execute(text(
            "SELECT count(*) FROM jobs WHERE kind = 'unlearn'")).scalar_one()
        idem_rows = conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    engine.dispose()
    if broker_url.startswith("redis"):
        from app.broker import make_celery
        from app.settings import Settings

        purged = make_celery(Settings(broker_url=broker_url, home=home)).control.purge()
    else:
        purged = None

    measured = [r for r in results if r[3]]
    accepted_ids = [r[2] for r in results if r[0] == 202]
    latencies = sorted(r[1] for r in measured if r[0] == 202)
    missing = [i for i in accepted_ids if i not in stored_ids]
    unacknowledged = len(stored_ids - set(accepted_ids))
    statuses = Counter(str(r[0]) if r[0] else "transport-error" for r in measured)
    ms = [1000 * v for v in latencies]
    summary = {
        "config": {
            "seconds": args.seconds, "warmup_s": args.warmup_s, "clients": args.clients,
            "loadgen_procs": args.loadgen_procs, "api_workers": args.api_workers,
            "api_max_in_flight": Settings().api_max_in_flight,
            "api_cpus": sorted(api_cpus) if api_cpus else "any",
            "loadgen_cpus": sorted(loadgen_cpus) if loadgen_cpus else "any",
            "max_ids_per_request": args.max_ids, "idempotency_key": not args.no_idempotency_key,
            "batch_max_samples": args.batch_max_samples, "broker": broker_url.split("://")[0],
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "loadavg_before": load_before, "loadavg_after": load_after,
        "requests": len(measured),
        "accepted": len(latencies),
        "accepted_per_s": len(latencies) / args.seconds,
        "latency_ms": {"p50": _percentile(ms, 50), "p90": _percentile(ms, 90),
                       "p99": _percentile(ms, 99), "max": ms[-1] if ms else float("nan"),
                       "mean": statistics.fmean(ms) if ms else float("nan")},
        "status_counts": dict(statuses),
        # CPU seconds per accepted request in the measured window, by side; ``cores / total`` is
        # the most a quiet machine with this many cores could accept per second.
        "cpu_ms_per_accepted": {k: 1000 * v / max(1, len(latencies)) for k, v in cpu_used.items()},
        "cpu_s": cpu_used,
        "stored": {"rows": row_count, "by_status": by_status,
                   "accepted_including_warmup": len(accepted_ids),
                   "accepted_missing": len(missing), "stored_unacknowledged": unacknowledged,
                   "idempotency_keys": idem_rows, "unlearn_jobs_sealed": jobs_sealed,
                   "broker_messages_purged": purged},
        "goal": {"accepted_per_s": 1000, "p99_ms": 50},
    }
    per_request_s = sum(cpu_used.values()) / max(1, len(latencies))
    summary["cpu_bound_per_s"] = (os.cpu_count() or 1) / per_request_s if per_request_s else None
    summary["goal"]["met"] = (summary["accepted_per_s"] >= 1000
                              and summary["latency_ms"]["p99"] < 50 and not missing)
    return summary


def markdown(s: dict[str, Any]) -> str:
    c, lat, st = s["config"], s["latency_ms"], s["stored"]
    errors = {k: v for k, v in s["status_counts"].items() if k != "202"}
    return "\n".join([
        f"# Intake benchmark ({c['seconds']} s, {c['clients']} clients, "
        f"{c['api_workers']} API processes)",
        "",
        "| accepted/s | p50 ms | p90 ms | p99 ms | max ms | errors | stored rows | accepted missing |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['accepted_per_s']:.0f} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | "
        f"{lat['max']:.1f} | {errors or 'none'} | {st['rows']} | {st['accepted_missing']} |",
        "",
        f"Configuration: {json.dumps(c)}",
        "CPU ms per accepted request: "
        + ", ".join(f"{k} {v:.2f}" for k, v in s["cpu_ms_per_accepted"].items())
        + (f" → at most {s['cpu_bound_per_s']:.0f}/s on {c['cpus']} quiet cores"
           if s["cpu_bound_per_s"] else ""),
        f"Load average before/after: {s['loadavg_before']} / {s['loadavg_after']}",
        f"Stored: {json.dumps(st)}",
        f"Goal (≥ 1000/s, p99 < 50 ms, nothing lost) met: {s['goal']['met']}",
        "",
    ])


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", help="PostgreSQL server (a database is created and dropped)")
    ap.add_argument("--broker-url", help="Celery broker (default LETHE_BENCH_REDIS_URL, else "
                    "the filesystem broker under a temp home); purged at the end")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured load duration")
    ap.add_argument("--warmup-s", type=float, default=3.0, help="unmeasured load before it")
    ap.add_argument("--clients", type=int, default=64, help="concurrent connections")
    ap.add_argument("--loadgen-procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--api-workers", type=int, default=2, help="API processes (lethe api --workers)")
    ap.add_argument("--api-cpus", help="pin the API processes to these CPUs, e.g. 0,1")
    ap.add_argument("--loadgen-cpus", help="pin the load generators to these CPUs, e.g. 1")
    ap.add_argument("--max-ids", type=int, default=5, help="most sample ids per request")
    ap.add_argument("--batch-max-samples", type=int, default=1000,
                    help="the model's batching.max_samples (seal every this many samples)")
    ap.add_argument("--no-idempotency-key", action="store_true")
    ap.add_argument("--keep-database", action="store_true")
    ap.add_argument("--py-spy", metavar="PATH", help="py-spy binary: profile the API processes "
                    "into <out>/intake-api.stacks (collapsed stacks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench")
    # the load generator child
    ap.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--model-id", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--loadgen-out", help=argparse.SUPPRESS)
    ap.add_argument("--permutation-seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--proc", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--procs", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.loadgen:
        loadgen_main(args)
        return None
    summary = run(args)
    write_report(Path(args.out), "intake", summary, markdown(summary))
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
