"""A queued job whose broker message was lost is published again by the reaper
(``dispatch.redispatch_lost_jobs``), with an explicit clock: once after
``LETHE_JOB_REDISPATCH_SECONDS``, not again before the (doubling) wait, never for a job that a
worker holds or finished. Pending requests whose window's seal check was lost are sealed
(``engine.seal_overdue``). And a duplicate message is harmless: delivering a finished or running
job again publishes no second version and no second ledger row (``engine.run_job``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from app import broker
from app.db.migrate import upgrade_to_head
from app.db.models import DeletionRequest, Job, LedgerEntry, Model, Version
from app.db.session import reset_engine, session_scope
from app.schemas.models import ModelCreate
from app.services import datasets, dispatch, models
from app.settings import get_settings

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
WAIT_S = 300.0


class LostBroker:
    """Takes every message and delivers none (a purged queue, a broker restarted empty)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[object, ...]]] = []
        self.fail = False

    def enqueue(self, task_name: str, *args: object, countdown: float | None = None) -> str:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.sent.append((task_name, args))
        return f"task-{len(self.sent)}"


@pytest.fixture
def lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LostBroker]:
    monkeypatch.setenv("LETHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LETHE_JOB_REDISPATCH_SECONDS", str(WAIT_S))
    for var in ("LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    reset_engine()
    upgrade_to_head()
    fake = LostBroker()
    monkeypatch.setattr(broker, "enqueue", fake.enqueue)
    yield fake
    reset_engine()
    get_settings.cache_clear()


def _model(**fields: object) -> tuple[str, str]:
    """A digits model and its queued train job (committed, not yet published)."""
    with session_scope() as s:
        dataset = datasets.register_builtin(s, name="digits", source="digits",
                                            data_dir=get_settings().resolved_data_dir)
        spec = ModelCreate.model_validate({
            "name": "m", "dataset_id": dataset.id, "architecture": "logreg",
            "training": {"epochs": 2, "batch_size": 64}, **fields})
        model, job = models.create_model(s, spec)
        s.flush()
        return model.id, job.id


def _job(job_id: str) -> Job:
    with session_scope() as s:
        return s.get_one(Job, job_id)


def _queued_job(at: datetime = T0) -> str:
    _, job_id = _model()
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(created_at=at))
        job = s.get_one(Job, job_id)
    dispatch.enqueue_job(job, now=at)
    return job_id


def test_a_lost_message_is_sent_again_once_then_not_before_the_wait(lost):
    job_id = _queued_job()
    assert lost.sent == [(broker.TASK_TRAIN, (job_id,))]
    first = _job(job_id)
    assert _utc(first.enqueued_at) == T0 and first.celery_task_id == "task-1"

    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=WAIT_S - 1)) == []
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=WAIT_S)) == [job_id]
    assert lost.sent[1:] == [(broker.TASK_TRAIN, (job_id,))]
    again = _job(job_id)
    assert _utc(again.enqueued_at) == T0 + timedelta(seconds=WAIT_S) and again.redispatches == 1
    assert again.celery_task_id == "task-1"  # the first task id stays

    # The second re-send waits twice as long after the first (back-off).
    for later_s in (WAIT_S + 1, 2 * WAIT_S, 3 * WAIT_S - 1):
        assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=later_s)) == []
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=3 * WAIT_S)) == [job_id]
    assert len(lost.sent) == 3 and _job(job_id).redispatches == 2


@pytest.mark.parametrize("status", ["running", "succeeded", "failed"])
def test_a_job_that_left_the_queue_is_never_sent_again(lost, status):
    job_id = _queued_job()
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=status))
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(days=1)) == []
    assert len(lost.sent) == 1


def test_a_job_whose_first_publish_failed_is_sent_from_its_creation(lost):
    lost.fail = True
    with pytest.raises(ConnectionError):
        _queued_job()
    lost.fail = False
    (job_id,) = [j.id for j in _all_jobs()]
    assert _job(job_id).enqueued_at is None  # nothing was published, nothing recorded
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=WAIT_S - 1)) == []
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=WAIT_S)) == [job_id]
    assert lost.sent == [(broker.TASK_TRAIN, (job_id,))]


def test_a_failed_re_send_is_logged_and_retried_after_the_next_wait(lost, caplog):
    job_id = _queued_job()
    lost.fail = True
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=WAIT_S)) == []
    assert f"publishing job {job_id} again failed" in caplog.text
    lost.fail = False
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=2 * WAIT_S)) == []
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=3 * WAIT_S)) == [job_id]
    assert len(lost.sent) == 2


def test_a_retry_while_the_model_is_busy_counts_as_a_publish(lost):
    job_id = _queued_job()
    dispatch.mark_published(job_id, now=T0 + timedelta(seconds=WAIT_S - 10))
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=WAIT_S)) == []
    assert dispatch.redispatch_lost_jobs(now=T0 + timedelta(seconds=2 * WAIT_S - 10)) == [job_id]


def test_the_busy_model_retry_of_a_task_records_its_publish(lost, monkeypatch):
    """workers.tasks: a job whose model is busy is retried by Celery (a new message), and
    ``enqueued_at`` moves with it, so the reaper does not add a duplicate."""
    from app.services import engine
    from workers import tasks

    job_id = _queued_job()

    def busy(job: str, expected_kind: str) -> str:
        raise engine.ModelBusy("m")

    class Task:
        def retry(self, **options: object) -> Exception:
            assert options == {"countdown": tasks.BUSY_RETRY_S, "max_retries": None, "throw": False}
            return RuntimeError("retry")

    monkeypatch.setattr(engine, "run_job", busy)
    with pytest.raises(RuntimeError, match="retry"):
        tasks._run(Task(), job_id, "train")
    assert _utc(_job(job_id).enqueued_at) > T0


def test_two_reapers_at_once_send_one_message(lost):
    job_id = _queued_job()
    now = T0 + timedelta(seconds=WAIT_S)
    assert dispatch.redispatch_lost_jobs(now=now) == [job_id]
    assert dispatch.redispatch_lost_jobs(now=now) == []  # the second sees the first's update
    assert len(lost.sent) == 2


def _all_jobs() -> list[Job]:
    with session_scope() as s:
        return list(s.scalars(select(Job)))


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def test_wait_doubles_up_to_the_cap():
    assert [dispatch.redispatch_wait_s(k, 10.0) for k in range(6)] == [10, 20, 40, 80, 80, 80]
    assert dispatch.redispatch_wait_s(10**6, 10.0) == 10.0 * dispatch.REDISPATCH_BACKOFF_CAP


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.floats(min_value=0, max_value=5 * WAIT_S, allow_nan=False), max_size=12))
def test_reaper_passes_send_exactly_when_the_wait_has_passed(lost, gaps):
    """Any schedule of reaper passes: a pass sends iff the time since the last publish reached
    the wait for the re-sends so far, and the counter equals the messages sent minus one."""
    with session_scope() as s:
        s.execute(update(Job).values(status="failed"))  # earlier examples' jobs leave the queue
    job_id = _queued_job()
    sent_before, last, count, now = len(lost.sent), T0, 0, T0
    for gap in gaps:
        now += timedelta(seconds=gap)
        expected = (now - last).total_seconds() >= dispatch.redispatch_wait_s(count, WAIT_S)
        assert dispatch.redispatch_lost_jobs(now=now) == ([job_id] if expected else [])
        if expected:
            last, count = now, count + 1
    assert _job(job_id).redispatches == count == len(lost.sent) - sent_before


def test_a_job_whose_worker_died_is_requeued_and_published(lost):
    """reap_stale_jobs publishes outside its session (on SQLite a nested transaction waited for
    the outer one's write lock until the busy timeout)."""
    from app.services import engine

    job_id = _queued_job()
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            status="running", attempts=1, heartbeat_at=datetime.now(timezone.utc) - timedelta(days=1)))
    assert engine.reap_stale_jobs() == [job_id]
    job = _job(job_id)
    assert job.status == "queued" and _utc(job.enqueued_at) > T0
    assert lost.sent == [(broker.TASK_TRAIN, (job_id,))] * 2


# --- a lost seal check ------------------------------------------------------------------------

WINDOW_S = 60


def _pending_request(status: str = "ready") -> tuple[str, str]:
    """A model in ``status`` whose one pending request (accepted at T0) never got sealed."""
    model_id, train_job = _model(batching={"max_samples": 100, "max_wait_seconds": WINDOW_S})
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == train_job).values(status="succeeded"))
        s.execute(update(Model).where(Model.id == model_id).values(
            status=status, current_version=0 if status == "ready" else None))
        request = DeletionRequest(model_id=model_id, sample_ids=[1, 2], created_at=T0)
        s.add(request)
        s.flush()
        return model_id, request.id


def test_requests_whose_seal_check_was_lost_are_sealed_after_the_grace(lost):
    from app.services import engine

    _, request_id = _pending_request()
    assert engine.seal_overdue(now=T0 + timedelta(seconds=WINDOW_S + WAIT_S - 1)) == []
    assert lost.sent == []
    sealed_at = T0 + timedelta(seconds=WINDOW_S + WAIT_S)
    (job_id,) = engine.seal_overdue(now=sealed_at)
    with session_scope() as s:
        request = s.get_one(DeletionRequest, request_id)
        assert (request.status, request.job_id) == ("batched", job_id)
        assert _utc(s.get_one(Job, job_id).enqueued_at) == sealed_at
    assert lost.sent == [(broker.TASK_UNLEARN_BATCH, (job_id,))]
    assert engine.seal_overdue(now=sealed_at + timedelta(days=1)) == []  # nothing pending now
    assert len(lost.sent) == 1


def test_a_model_that_is_not_ready_seals_nothing(lost):
    from app.services import engine

    _, request_id = _pending_request(status="training")
    assert engine.seal_overdue(now=T0 + timedelta(days=1)) == []
    with session_scope() as s:
        assert s.get_one(DeletionRequest, request_id).status == "pending"
    assert lost.sent == []


# --- a duplicate message is harmless ----------------------------------------------------------

def _published(model_id: str) -> tuple[int, int]:
    with session_scope() as s:
        return (s.scalar(select(func.count()).select_from(Version).where(Version.model_id == model_id)),
                s.scalar(select(func.count()).select_from(LedgerEntry)
                         .where(LedgerEntry.model_id == model_id)))


def test_a_duplicate_message_of_a_finished_or_running_job_is_a_no_op(lost):
    from app.services import engine  # the worker side (imports torch)

    model_id, job_id = _model()
    assert engine.run_job(job_id, expected_kind="train") == "succeeded"
    assert _published(model_id) == (1, 1)
    done = _job(job_id)

    # The message arrives again (a re-send whose original was not lost after all).
    assert engine.run_job(job_id, expected_kind="train") == "succeeded"
    assert _published(model_id) == (1, 1)
    again = _job(job_id)
    assert (again.attempts, again.finished_at, again.version) == (done.attempts, done.finished_at, 0)

    # While another worker runs it (fresh heartbeat), a duplicate returns at once, untouched.
    running_at = datetime.now(timezone.utc)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="running",
                                                             heartbeat_at=running_at))
    assert engine.run_job(job_id, expected_kind="train") == "running"
    assert _published(model_id) == (1, 1)
    with session_scope() as s:
        job = s.get_one(Job, job_id)
        assert (job.status, job.attempts) == ("running", done.attempts)
        assert s.get_one(Model, model_id).current_version == 0


def test_a_release_is_never_published_over_one_its_job_did_not_start_from(lost):
    from types import SimpleNamespace

    from app.services import engine

    model_id, job_id = _model()
    assert engine.run_job(job_id, expected_kind="train") == "succeeded"  # version 0
    stale = SimpleNamespace(job_id="a-job-that-started-from-an-older-release", model_id=model_id)
    with pytest.raises(RuntimeError, match="started from version 7 but version 0"):
        engine._publish(stale, kind="unlearned", sha="0" * 64, size=1, cert={}, metrics={},
                        new_forgotten=[1], ledger={}, timings={}, new_lineage=False, parent=7)
    assert _published(model_id) == (1, 1)
