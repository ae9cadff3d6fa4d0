"""Worker-side job lifecycle: claim a job, run its computation, publish its version.

Runs only in the worker process (it imports torch through :mod:`app.services.compute`).
Every task goes through :func:`run_job`, which

1. claims the job with a conditional UPDATE (``queued`` → ``running``), so a duplicate delivery
   returns at once;
2. re-reads the model, dataset, forgotten set and requests (ids, not objects, cross the queue),
   and records on the job the runtime that computes it (device, torch and CUDA versions);
3. computes outside any transaction, on the worker's device (``worker_runtime``), whose cached
   memory is released when the job ends;
4. publishes in ONE transaction: the version (number = previous + 1), its ledger row, the newly
   forgotten samples, the requests' completion, the job's success, the model's current version.

On an error the job, its requests (and, for training, the model) are marked ``failed`` with the
reason, and nothing is published.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import torch
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.models import Dataset, Job, LedgerEntry, Model, Version
from app.db.session import session_scope
from app.services import batching, certificates, compute, dispatch, requests, signing, worker_runtime
from app.services.forgotten import forgotten_versions, record_forgotten
from app.services.uploads import NPZ_SUFFIX
from app.settings import get_settings
from app.storage.artifacts import ArtifactStore, PrivateStore
from app.unlearning.uploads import UPLOAD_SOURCE
from app.unlearning.device import release_device_memory
from app.services.budget_policy import Release, lineage_figures

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class JobContext:
    """A detached snapshot of what a job reads (the rows themselves stay in their session)."""

    job_id: str
    kind: str
    model_id: str
    model_name: str
    architecture: str
    training: dict[str, Any]
    certification: dict[str, Any]
    dataset_id: str
    dataset_source: str
    dataset_checksum: str
    dataset_n: int
    budget: dict[str, Any]
    runtime: dict[str, Any]


class ModelBusy(Exception):
    """Another job of the same model is running: one job at a time per model (retry later)."""


def _stale_before() -> datetime:
    return _now() - timedelta(seconds=get_settings().job_stale_seconds)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _claim(job_id: str, expected_kind: str) -> JobContext | None:
    """Claim a queued job, or reclaim a running one whose worker stopped beating.

    Two conditional UPDATEs in one transaction: the job (``queued``, or ``running`` with a stale
    heartbeat), then the model's ``active_job_id`` (free, ours, or held by a finished or stale
    job), after taking the model's row lock with ``SELECT ... FOR UPDATE``, so two workers can
    never both hold one model.

    Raises:
        ModelBusy: Another live job holds the model; nothing was changed.
    """
    stale = _stale_before()
    runtime = worker_runtime.current().info
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind != expected_kind:
            return None
        if job.status == "running" and job.attempts >= get_settings().job_max_attempts:
            if job.heartbeat_at is not None and _utc(job.heartbeat_at) < stale:
                _give_up(session, job)
            return None
        claimed = session.execute(
            update(Job).where(Job.id == job_id, or_(
                Job.status == "queued",
                and_(Job.status == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))))
            .values(status="running", attempts=Job.attempts + 1, heartbeat_at=_now(), runtime=runtime)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            return None
        # Wait for the model's row lock BEFORE the conditional UPDATE reads the holder's status:
        # under READ COMMITTED, PostgreSQL re-checks a row it waited for against the new row but
        # evaluates the subquery with the snapshot taken when the statement began. A holder that
        # committed its claim meanwhile still looked "queued" (so done), and two jobs ran on one
        # model at once (seen in test_two_workers_race_for_one_model). After this SELECT the
        # UPDATE below starts with a fresh snapshot. (SQLite: BEGIN IMMEDIATE already serialises.)
        session.execute(select(Model.id).where(Model.id == job.model_id).with_for_update())
        holders_done = select(Job.id).where(or_(Job.status != "running", Job.heartbeat_at < stale))
        held = session.execute(
            update(Model).where(Model.id == job.model_id, or_(
                Model.active_job_id.is_(None), Model.active_job_id == job_id,
                Model.active_job_id.in_(holders_done)))
            .values(active_job_id=job_id).execution_options(synchronize_session=False)
        ).rowcount
        if not held:
            session.rollback()
            raise ModelBusy(job.model_id)
        # Stamped only now that the model is ours: the UPDATE above may have waited on the row
        # lock of the previous job's publish, and its finished_at must precede our started_at.
        session.execute(update(Job).where(Job.id == job_id).values(started_at=_now())
                        .execution_options(synchronize_session=False))
        session.refresh(job)
        model = session.get_one(Model, job.model_id)
        dataset = session.get_one(Dataset, model.dataset_id)
        if job.kind in ("unlearn", "retrain"):
            requests.mark_job_requests_applying(session, job_id)
        return JobContext(job.id, job.kind, model.id, model.name, model.architecture,
                          dict(model.training), dict(model.certification), dataset.id,
                          dataset.source, dataset.checksum_sha256, dataset.n, dict(model.budget),
                          runtime)


class _Heartbeat:
    """Writes the job's ``heartbeat_at`` from a daemon thread while the job runs."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        period = get_settings().job_stale_seconds / 4
        while not self.stop.wait(period):
            with session_scope() as session:
                session.execute(update(Job).where(Job.id == self.job_id, Job.status == "running")
                                .values(heartbeat_at=_now()))

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_job(job_id: str, expected_kind: str) -> str:
    """Run one job to completion; returns its final status. Idempotent per job id.

    Raises:
        ModelBusy: Another job of the model is running; the task retries later.
    """
    ctx = _claim(job_id, expected_kind)
    if ctx is None:
        with session_scope() as session:
            job = session.get(Job, job_id)
            return job.status if job else "missing"
    try:
        with _Heartbeat(job_id):
            if ctx.kind == "train":
                _train(ctx)
            elif ctx.kind == "unlearn":
                _unlearn(ctx)
            else:
                _retrain(ctx)
    except Exception as exc:  # a failed job must be recorded, whatever failed
        log.exception("job %s failed", job_id)
        _fail(ctx, f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        release_device_memory(_device())
    seal_and_enqueue(ctx.model_id)
    return "succeeded"


def reap_stale_jobs() -> list[str]:
    """Requeue running jobs whose worker died (stale heartbeat), or fail those out of attempts.

    Returns the ids requeued. Safe to run from several workers at once: each change is a
    conditional UPDATE on the stale state it observed.
    """
    stale, requeued = _stale_before(), []
    with session_scope() as session:
        dead = session.scalars(select(Job).where(Job.status == "running", Job.heartbeat_at < stale)).all()
        for job in dead:
            if job.attempts >= get_settings().job_max_attempts:
                _give_up(session, job)
                continue
            moved = session.execute(update(Job).where(
                Job.id == job.id, Job.status == "running", Job.heartbeat_at == job.heartbeat_at)
                .values(status="queued").execution_options(synchronize_session=False)).rowcount
            if moved:
                requeued.append(job)
    for job in requeued:  # after the commit, outside any session (see seal_and_enqueue)
        log.warning("job %s: its worker stopped beating; requeued", job.id)
        dispatch.enqueue_job(job)
    return [job.id for job in requeued]


def _give_up(session: Session, job: Job) -> None:
    reason = (f"gave up after {job.attempts} attempts: the worker running the job stopped "
              "(killed or crashed) each time")
    session.execute(update(Job).where(Job.id == job.id).values(
        status="failed", error=reason, finished_at=_now()).execution_options(synchronize_session=False))
    requests.fail_job_requests(session, job.id, reason)
    _release(session, job.model_id, job.id)
    if job.kind == "train":
        session.execute(update(Model).where(Model.id == job.model_id).values(status="failed", error=reason))


def _release(session: Session, model_id: str, job_id: str) -> None:
    session.execute(update(Model).where(Model.id == model_id, Model.active_job_id == job_id)
                    .values(active_job_id=None))


def _fail(ctx: JobContext, reason: str) -> None:
    """Record the reason (the traceback stays in the worker's log, never in an answer)."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == ctx.job_id).values(
            status="failed", error=reason, finished_at=_now()))
        requests.fail_job_requests(session, ctx.job_id, reason)
        _release(session, ctx.model_id, ctx.job_id)
        if ctx.kind == "train":
            session.execute(update(Model).where(Model.id == ctx.model_id)
                            .values(status="failed", error=reason))


def seal_and_enqueue(model_id: str, *, now: datetime | None = None) -> str | None:
    """Seal the model's due pending requests into a batch and enqueue it (after the commit);
    if none is due yet, schedule the seal check of the oldest pending request's window.

    Args:
        model_id: The model.
        now: The clock (tests); default now, UTC.

    Returns:
        The id of the job sealed, or ``None``.
    """
    with session_scope() as session:
        job = batching.seal_if_due(session, model_id, now=now)
        model = session.get(Model, model_id)
        # Only a ready model seals; a training one is re-checked when its training publishes.
        wait = (batching.seconds_until_due(session, model_id, now=now)
                if job is None and model is not None and model.status == "ready" else None)
    # After the session closed: on SQLite an open transaction holds the write lock that
    # enqueue_job's own transaction needs.
    if job is not None:
        dispatch.enqueue_job(job, now=now)
        return job.id
    if wait is not None:
        dispatch.schedule_seal_check(model_id, wait)
    return None


def seal_overdue(*, now: datetime | None = None) -> list[str]:
    """Seal the pending requests of every ready model whose oldest pending request is past its
    window (``batching.max_wait_seconds``) by ``LETHE_JOB_REDISPATCH_SECONDS`` or more: the
    window's seal check (a delayed broker message) was lost, and with no new request and no job
    of the model nothing else would seal them (issue 4 §2: an accepted request is never lost).

    One indexed aggregate per model (``batching.pending_summary``); run by the workers' reaper.

    Args:
        now: The clock (tests); default now, UTC.

    Returns:
        The ids of the jobs sealed (and enqueued).
    """
    now = now or _now()
    grace_s = get_settings().job_redispatch_seconds
    overdue = []
    with session_scope() as session:
        for model in session.scalars(select(Model).where(Model.status == "ready")):
            oldest = batching.pending_summary(session, model.id).oldest_created_at
            window_s = batching.batching_policy(model).max_wait_seconds
            if oldest is not None and (now - oldest).total_seconds() >= window_s + grace_s:
                overdue.append(model.id)
    sealed = []
    for model_id in overdue:
        log.warning("model %s: pending requests past their window were not sealed (a lost seal "
                    "check); sealing them now", model_id)
        job_id = seal_and_enqueue(model_id, now=now)
        if job_id:
            sealed.append(job_id)
    return sealed


class _Progress:
    """Reports a job's progress to its row, at most once a second."""

    def __init__(self, job_id: str) -> None:
        self.job_id, self.last = job_id, 0.0

    def __call__(self, fraction: float) -> None:
        if time.monotonic() - self.last < 1.0 and fraction < 1.0:
            return
        self.last = time.monotonic()
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == self.job_id).values(progress=float(fraction)))


def _stores() -> tuple[ArtifactStore, PrivateStore]:
    settings = get_settings()
    return ArtifactStore(settings.artifacts_dir), PrivateStore(settings.private_dir)


def _device() -> torch.device:
    return worker_runtime.current().device


def _data(ctx: JobContext) -> compute.ArrayDataset:
    settings = get_settings()
    if ctx.dataset_source == UPLOAD_SOURCE:  # stored at its content address: the checksum
        path = ArtifactStore(settings.artifacts_dir).path_for(ctx.dataset_checksum, NPZ_SUFFIX)
        return compute.load_uploaded_dataset(str(path), ctx.dataset_checksum)
    return compute.load_dataset(ctx.dataset_source, str(settings.resolved_data_dir))


def _metadata(ctx: JobContext) -> dict[str, str]:
    return {"lethe.model_id": ctx.model_id, "lethe.job_id": ctx.job_id,
            "lethe.architecture": ctx.architecture, "format": "pt"}


# --- train (version 0) ------------------------------------------------------------------------

def _train(ctx: JobContext) -> None:
    data = _data(ctx)
    started = time.perf_counter()
    model, outcome = compute.train_on(ctx.architecture, data, ctx.training,
                                      np.arange(ctx.dataset_n, dtype=np.int64), _Progress(ctx.job_id),
                                      _device())
    artifacts, private = _stores()
    state = compute.weights_file(model, outcome.params, _metadata(ctx))
    private.put_state(ctx.model_id, ctx.job_id, state)
    # Version 0 forgets nothing: the release is the trained weights themselves.
    sha, size = artifacts.put(state)
    elapsed = time.perf_counter() - started
    metrics = {"accuracy": {"forget": None, **outcome.accuracy},
               "final_grad_norm": outcome.final_grad_norm, "train_s": outcome.elapsed_s}
    cert = certificates.for_training(ctx, sha, outcome, metrics, elapsed)
    _publish(ctx, kind="trained", sha=sha, size=size, cert=cert, metrics=metrics,
             new_forgotten=[], ledger=_ledger_zero(outcome.retain_size),
             timings={"train_s": outcome.elapsed_s, "total_s": elapsed}, new_lineage=True)


def _ledger_zero(retain_size: int) -> dict[str, Any]:
    return {"m": 0, "retain_size": retain_size, "sensitivity": 0.0, "noise_std": 0.0,
            "epsilon": 0.0, "delta": 0.0, "cumulative_epsilon": 0.0, "cumulative_delta": 0.0,
            "accountant": "none"}


# --- unlearn one batch ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Batch:
    """What a job removes: its D_u (``new``), everything removed so far, and the parent release."""

    new: list[int]
    removed: set[int]
    retain: np.ndarray  # int64 [n_r], rows of D_r
    parent: int
    parent_job: str
    parent_sha: str


def _batch(ctx: JobContext) -> _Batch:
    with session_scope() as session:
        new = requests.forget_set_of_job(session, session.get_one(Job, ctx.job_id))
        removed = set(forgotten_versions(session, ctx.model_id)) | set(new)
        model = session.get_one(Model, ctx.model_id)
        if model.current_version is None:
            raise RuntimeError("the model has no published version to unlearn from")
        parent = session.scalars(select(Version).where(
            Version.model_id == ctx.model_id, Version.number == model.current_version)).one()
        retain = np.setdiff1d(np.arange(ctx.dataset_n, dtype=np.int64),
                              np.fromiter(removed, dtype=np.int64, count=len(removed)))
        return _Batch(new, removed, retain, parent.number, parent.job_id or "", parent.sha256)


def _unlearn(ctx: JobContext) -> None:
    batch = _batch(ctx)
    new, retain, parent = batch.new, batch.retain, batch.parent
    if not new:
        _complete_without_version(ctx)
        return
    data = _data(ctx)
    artifacts, private = _stores()
    model = compute.new_model(ctx.architecture, data, ctx.training, _device())
    w_k = compute.params_from_file(model, private.read_state(ctx.model_id, batch.parent_job))
    outcome = compute.unlearn_on(model, data, w_k, retain, np.asarray(new, dtype=np.int64),
                                 ctx.architecture, ctx.training, ctx.certification)
    delta = float(ctx.certification["delta"])
    with session_scope() as session:
        lineage = [_as_release(row, delta) for row in _lineage_releases(session, ctx.model_id)]
    release = Release(outcome.noise_std / outcome.sensitivity.total, len(new), outcome.sensitivity.rho)
    figures = lineage_figures(lineage + [release], ctx.budget, n=ctx.dataset_n, delta=delta)
    if not figures.within_caps:
        # METHOD §7: a release that would break a cap is never published; the batch is served
        # by an exact retrain, which starts a new lineage.
        log.info("job %s: budget caps would break (%s); retraining", ctx.job_id, figures.broken)
        _retrain(ctx, reason="budget fallback: " + "; ".join(figures.broken))
        return
    private.put_state(ctx.model_id, ctx.job_id,
                      compute.weights_file(model, outcome.internal, _metadata(ctx)))
    sha, size = artifacts.put(compute.weights_file(model, outcome.released, _metadata(ctx)))
    ledger = {"m": len(new), "retain_size": int(retain.size),
              "sensitivity": outcome.sensitivity.total, "noise_std": outcome.noise_std,
              "epsilon": outcome.epsilon, "delta": outcome.certified_delta,
              "cumulative_epsilon": figures.epsilon, "cumulative_delta": figures.delta,
              "accountant": figures.accountant, "releases": figures.releases,
              "forgotten_fraction": figures.forgotten_fraction}
    metrics = {"accuracy": outcome.accuracy, "step_norm": outcome.step.step_norm,
               "gradient_norm": outcome.step.gradient_norm}
    cert = certificates.for_unlearning(ctx, sha, parent, batch.parent_sha, new, outcome, ledger,
                                       metrics)
    _publish(ctx, kind="unlearned", sha=sha, size=size, cert=cert, metrics=metrics,
             new_forgotten=new, ledger=ledger, timings=outcome.elapsed_s, new_lineage=False,
             parent=parent)


def _as_release(row: LedgerEntry, delta: float) -> Release:
    """A ledger row as the budget policy sees it; its ρ was stored as certified δ − δ."""
    return Release(row.noise_std / row.sensitivity, row.m, max(0.0, row.delta - delta))


def _lineage_releases(session: Session, model_id: str) -> list[LedgerEntry]:
    """The unlearning releases of the model's current lineage (what its ledger composes)."""
    lineage = session.scalar(select(func.max(LedgerEntry.lineage)).where(LedgerEntry.model_id == model_id))
    return list(session.scalars(select(LedgerEntry).where(
        LedgerEntry.model_id == model_id, LedgerEntry.lineage == lineage,
        LedgerEntry.kind == "unlearned").order_by(LedgerEntry.version)))


def _complete_without_version(ctx: JobContext) -> None:
    """Every requested sample was already forgotten: point each request at that version."""
    with session_scope() as session:
        for request in requests.requests_of_job(session, ctx.job_id):
            forgot = forgotten_versions(session, ctx.model_id, (int(i) for i in request.sample_ids))
            request.version, request.status = max(forgot.values()), "completed"
        session.execute(update(Job).where(Job.id == ctx.job_id).values(
            status="succeeded", progress=1.0, finished_at=_now()))
        _release(session, ctx.model_id, ctx.job_id)


# --- exact retrain ----------------------------------------------------------------------------

def _retrain(ctx: JobContext, reason: str = "requested by an admin") -> None:
    """Exact retrain from scratch on D_r, serving every request sealed into the job."""
    batch = _batch(ctx)
    new, removed, parent = batch.new, batch.removed, batch.parent
    data = _data(ctx)
    started = time.perf_counter()
    model, outcome = compute.train_on(ctx.architecture, data, ctx.training, batch.retain,
                                      _Progress(ctx.job_id), _device())
    artifacts, private = _stores()
    state = compute.weights_file(model, outcome.params, _metadata(ctx))
    private.put_state(ctx.model_id, ctx.job_id, state)
    sha, size = artifacts.put(state)  # exact removal: released without noise (ε = 0)
    forget_acc = (compute.forget_accuracy(model, data, outcome.params, sorted(removed))
                  if removed else None)
    metrics = {"accuracy": {"forget": forget_acc, **outcome.accuracy},
               "final_grad_norm": outcome.final_grad_norm, "train_s": outcome.elapsed_s}
    elapsed = time.perf_counter() - started
    cert = certificates.for_retrain(ctx, sha, parent, batch.parent_sha, new, sorted(removed),
                                    outcome, metrics, elapsed, reason)
    _publish(ctx, kind="retrained", sha=sha, size=size, cert=cert, metrics=metrics,
             new_forgotten=new, ledger=_ledger_zero(outcome.retain_size) | {"m": len(new)},
             timings={"train_s": outcome.elapsed_s, "total_s": elapsed}, new_lineage=True,
             parent=parent)


# --- publish ----------------------------------------------------------------------------------

def _publish(ctx: JobContext, *, kind: str, sha: str, size: int, cert: dict[str, Any],
             metrics: dict[str, Any], new_forgotten: list[int], ledger: dict[str, Any],
             timings: dict[str, Any], new_lineage: bool, parent: int | None = None) -> None:
    """Write the version, its ledger row, the forgotten samples and every status in one transaction."""
    with session_scope() as session:
        if session.scalar(select(Version.id).where(Version.job_id == ctx.job_id)):
            return  # already published by an earlier delivery of this job
        last = session.scalar(select(func.max(Version.number)).where(Version.model_id == ctx.model_id))
        if parent is not None and last != parent:
            # Never publish over a release this job did not start from (its w_k would restore
            # the influence of samples that release removed); the model lock makes this unreachable.
            raise RuntimeError(f"job {ctx.job_id} started from version {parent} but version {last} "
                               "was published meanwhile; refusing to publish")
        number = 0 if last is None else last + 1
        last_lineage = session.scalar(select(func.max(Version.lineage)).where(
            Version.model_id == ctx.model_id))
        lineage = 0 if last_lineage is None else last_lineage + (1 if new_lineage else 0)
        cert = signing.sign_certificate(certificates.finalize(cert, version=number, lineage=lineage))
        session.add(Version(model_id=ctx.model_id, number=number, parent_number=parent,
                            lineage=lineage, kind=kind, job_id=ctx.job_id, sha256=sha,
                            size_bytes=size, certificate=cert, metrics=metrics))
        ledger = {k: v for k, v in ledger.items() if k not in ("releases", "forgotten_fraction")}
        session.add(LedgerEntry(model_id=ctx.model_id, version=number, lineage=lineage, kind=kind,
                                **ledger))
        record_forgotten(session, ctx.model_id, new_forgotten, number)
        requests.finish_job_requests(session, ctx.job_id, number)
        session.execute(update(Job).where(Job.id == ctx.job_id).values(
            status="succeeded", progress=1.0, version=number, finished_at=_now(), timings=timings))
        session.execute(update(Model).where(Model.id == ctx.model_id).values(
            status="ready", current_version=number, error=None))
        _release(session, ctx.model_id, ctx.job_id)
