"""The Celery app of the worker process: configuration from ``app.broker``, tasks from
``workers.tasks``. Run with ``lethe worker`` (``--pool=solo``: one job at a time per process,
one process per GPU).

The device (``LETHE_DEVICE``) is prepared in ``worker_process_init``: in the solo pool that is the
worker process itself once it starts, in a prefork pool each child after its fork, so CUDA is
never initialised at import time or before a fork. A device that is malformed or absent stops the
worker with exit code ``app.broker.EXIT_BAD_DEVICE`` and the reason in its log.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.worker.control import inspect_command

from app.broker import CONTROL_RUNTIME, EXIT_BAD_DEVICE, make_celery

celery_app = make_celery()
celery_app.conf.update(include=["workers.tasks"])
log = logging.getLogger(__name__)
_stop_reaper = threading.Event()

@worker_process_init.connect
def _prepare_device(**_kwargs: object) -> None:
    # torch is imported here, inside the worker after it starts, never at import time.
    from app.services import worker_runtime
    from app.unlearning.device import DeviceError

    try:
        runtime = worker_runtime.start()
    except DeviceError as exc:
        log.critical("lethe worker cannot start: %s", exc)
        # SystemExit passes through Celery's signal dispatch (it catches Exception only).
        raise SystemExit(EXIT_BAD_DEVICE) from exc
    log.info("lethe worker computes on %s (%s)", runtime.info["device"], runtime.info["device_name"])


@worker_ready.connect
def _on_ready(**_kwargs: object) -> None:
    threading.Thread(target=_reaper, name="lethe-reaper", daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(**_kwargs: object) -> None:
    _stop_reaper.set()


@inspect_command(name=CONTROL_RUNTIME)
def _runtime(_state: Any, **_kwargs: Any) -> dict[str, Any]:
    """Remote-control answer for ``/readyz``: this worker's device and versions."""
    from app.services import worker_runtime

    return worker_runtime.current().info


def _reaper() -> None:
    """Now and periodically: requeue jobs whose worker died (stale heartbeat); publish again the
    jobs still queued long after their message was published (a lost message); seal the pending
    requests whose window's seal check was lost; delete the Idempotency-Keys past their TTL and
    the partial uploads left by an API process that died mid-upload."""
    from app.db.session import session_scope
    from app.services.dispatch import redispatch_lost_jobs
    from app.services.engine import reap_stale_jobs, seal_overdue
    from app.services.idempotency import purge_expired
    from app.settings import get_settings
    from app.storage.artifacts import ArtifactStore

    settings = get_settings()
    period = min(settings.job_stale_seconds, settings.job_redispatch_seconds) / 2
    while True:
        # Each step on its own: the reaper must outlive a database or broker hiccup.
        try:
            reap_stale_jobs()
        except Exception:
            log.exception("reaping stale jobs failed")
        try:
            redispatch_lost_jobs()
        except Exception:
            log.exception("publishing lost jobs again failed")
        try:
            seal_overdue()
        except Exception:
            log.exception("sealing overdue requests failed")
        try:
            with session_scope() as session:
                purged = purge_expired(session)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except Exception:
            log.exception("purging expired idempotency keys failed")
        try:
            swept = ArtifactStore(settings.artifacts_dir).sweep_incoming(settings.upload_abandon_seconds)
            if swept:
                log.info("deleted %d abandoned partial uploads", swept)
        except Exception:
            log.exception("sweeping abandoned uploads failed")
        if _stop_reaper.wait(period):
            return
