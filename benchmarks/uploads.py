"""Cost of registering an uploaded dataset and of resolving request ids through ``dataset_samples``.

For an MNIST-sized upload (n = 60,000 rows of 784 uint8 features, unique sample ids, 3 samples per
subject) on SQLite (the embedded default) and, when ``--postgres URL`` is given, PostgreSQL:

- ``register_s``: validation of the file (:func:`app.unlearning.uploads.inspect_npz`), the dataset
  row and its 60k ``dataset_samples`` rows, up to the commit;
- ``resolve_samples_s``: one request naming ``k`` random sample ids → rows, for k in 1, 1000 and
  60,000 (every row: the worst case under ``max_request_samples``);
- ``resolve_subjects_s``: one request naming 1000 subjects (3000 rows).

Each figure is the median of ``--repeats`` runs. Writes ``<out>/uploads.json`` and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db.migrate import upgrade_to_head  # noqa: E402
from app.db.session import make_engine  # noqa: E402
from app.services import id_lookup, uploads  # noqa: E402
from app.storage.artifacts import ArtifactStore  # noqa: E402


def _npz(n: int, d: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, x=rng.integers(0, 256, size=(n, d), dtype=np.uint8), y=np.arange(n) % 10,
             sample_ids=np.array([f"sample-{i:06d}" for i in range(n)]),
             subject_ids=np.array([f"subject-{i // 3:06d}" for i in range(n)]))
    return buf.getvalue()


def _median(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(url: str, body: bytes, n: int, repeats: int, work: Path) -> dict[str, Any]:
    upgrade_to_head(url)
    engine = make_engine(url)
    store = ArtifactStore(work / "artifacts")
    sha = hashlib.sha256(body).hexdigest()
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {"dialect": engine.dialect.name}
    try:
        dataset_ids: list[str] = []

        def register() -> None:
            file = store.incoming_dir() / f"{uuid.uuid4().hex}.part"
            file.write_bytes(body)
            with Session(engine) as session, session.begin():
                dataset, _ = uploads.register_upload(session, name="bench", file=file, sha256=sha,
                                                     store=store, max_array_bytes=1 << 30)
                dataset_ids.append(dataset.id)

        out["register_s"] = _median(register, repeats)
        with Session(engine) as session:
            from app.db.models import Dataset

            dataset = session.get_one(Dataset, dataset_ids[-1])
            out["resolve_samples_s"] = {}
            for k in sorted({1, min(1000, n), n}):
                ids = [f"sample-{i:06d}" for i in rng.choice(n, size=k, replace=False)]
                out["resolve_samples_s"][str(k)] = _median(
                    lambda ids=ids: id_lookup.rows_of_sample_ids(session, dataset.id, ids,
                                                                 max_samples=10**6), repeats)
            n_subjects = min(1000, n // 3)
            subjects = [f"subject-{i:06d}" for i in rng.choice(n // 3, size=n_subjects,
                                                               replace=False)]
            out["resolve_subjects_s"] = {str(n_subjects): _median(
                lambda: id_lookup.rows_of_subjects(session, dataset, subjects, max_samples=10**6),
                repeats)}
    finally:
        engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", help="A PostgreSQL URL; a scratch database is created.")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args(argv)
    body = _npz(args.n, args.d)
    report: dict[str, Any] = {"n": args.n, "d": args.d, "file_bytes": len(body), "results": []}
    with tempfile.TemporaryDirectory(prefix="lethe-bench-uploads-") as tmp:
        work = Path(tmp)
        report["results"].append(measure(f"sqlite:///{work / 'bench.db'}", body, args.n,
                                         args.repeats, work / "sqlite"))
        if args.postgres:
            name = f"lethe_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
                report["results"].append(measure(url, body, args.n, args.repeats, work / "pg"))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "uploads.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
